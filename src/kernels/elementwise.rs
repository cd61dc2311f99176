//! Element-wise kernels: one pass over f32 slices, split across threads in fixed chunks and
//! compiled for AVX-512 and AVX2 (the variant chosen at run time). Outputs are written, never
//! read, so they may be fresh uninitialised memory.

use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use super::math::{erf, exp};

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `out[i] = f(x[i])`.
pub fn map(x: &[f32], out: &mut [MaybeUninit<f32>], f: impl Fn(f32) -> f32 + Sync + Copy) {
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(out, x)| map_chunk(x, out, f));
}

/// `out[i] = f(a[i], b[i])`.
pub fn zip_map(
    a: &[f32],
    b: &[f32],
    out: &mut [MaybeUninit<f32>],
    f: impl Fn(f32, f32) -> f32 + Sync + Copy,
) {
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(out, (a, b))| zip_map_chunk(a, b, out, f));
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn map_chunk<F: Fn(f32) -> f32>(x: &[f32], out: &mut [MaybeUninit<f32>], f: F) {
    for (out, &x) in out.iter_mut().zip(x) {
        out.write(f(x));
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn zip_map_chunk<F: Fn(f32, f32) -> f32>(a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>], f: F) {
    for (out, (&a, &b)) in out.iter_mut().zip(a.iter().zip(b)) {
        out.write(f(a, b));
    }
}

/// 1/√2 and 1/√(2π).
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// The exact GELU, x·Φ(x).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// d GELU(x) / dx times `grad`: Φ(x) + x·φ(x).
#[inline(always)]
pub fn gelu_backward(x: f32, grad: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
    let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * x * x);
    grad * (cdf + x * pdf)
}
