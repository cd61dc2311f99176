//! Layer normalisation over the last dimension, forward and backward, one pass per row.
//! Rows are split across threads in fixed groups, whose parameter-gradient sums are added in
//! group order: the result does not depend on the thread count.

use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use super::math;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// The mean and 1/σ of one row (σ² the biased variance, as PyTorch's and burn's).
#[inline(always)]
fn moments(row: &[f32], epsilon: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = math::sum(row) / n;
    let variance = math::sum_map(row, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (variance + epsilon).sqrt())
}

/// `out = (x − mean) / σ · gamma + beta`, row by row; `x` and `out` hold rows of `gamma.len()`.
pub fn forward(x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f32, out: &mut [MaybeUninit<f32>]) {
    let d = gamma.len();
    out.par_chunks_mut(ROWS_PER_TASK * d)
        .zip(x.par_chunks(ROWS_PER_TASK * d))
        .for_each(|(out, x)| forward_rows(x, gamma, beta, epsilon, out));
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn forward_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    out: &mut [MaybeUninit<f32>],
) {
    let d = gamma.len();
    for (out, x) in out.chunks_mut(d).zip(x.chunks(d)) {
        let (mean, rstd) = moments(x, epsilon);
        for (((out, &x), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            out.write((x - mean) * rstd * g + b);
        }
    }
}

/// The gradients with respect to `x` (written to `dx`), `gamma` and `beta` (returned).
pub fn backward(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    epsilon: f32,
    dx: &mut [MaybeUninit<f32>],
) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let rows = ROWS_PER_TASK * d;
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(rows)
        .zip(x.par_chunks(rows).zip(dy.par_chunks(rows)))
        .map(|(dx, (x, dy))| {
            let (mut dgamma, mut dbeta) = (vec![0.0; d], vec![0.0; d]);
            backward_rows(x, gamma, dy, epsilon, dx, &mut dgamma, &mut dbeta);
            (dgamma, dbeta)
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0; d], vec![0.0; d]);
    for (g, b) in &partial {
        dgamma.iter_mut().zip(g).for_each(|(s, v)| *s += v);
        dbeta.iter_mut().zip(b).for_each(|(s, v)| *s += v);
    }
    (dgamma, dbeta)
}

/// With x̂ the normalised row and g = dy·gamma:
/// dx = (g − mean(g) − x̂·mean(g·x̂)) / σ, dgamma += dy·x̂, dbeta += dy.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn backward_rows(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    epsilon: f32,
    dx: &mut [MaybeUninit<f32>],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let d = gamma.len();
    let (mut normalized, mut scaled) = (vec![0.0; d], vec![0.0; d]);
    for (dx, (x, dy)) in dx.chunks_mut(d).zip(x.chunks(d).zip(dy.chunks(d))) {
        let (mean, rstd) = moments(x, epsilon);
        for i in 0..d {
            normalized[i] = (x[i] - mean) * rstd;
            scaled[i] = dy[i] * gamma[i];
            dgamma[i] += dy[i] * normalized[i];
            dbeta[i] += dy[i];
        }
        let mean_scaled = math::sum(&scaled) / d as f32;
        let mean_product = math::dot(&scaled, &normalized) / d as f32;
        for i in 0..d {
            dx[i].write(rstd * (scaled[i] - mean_scaled - normalized[i] * mean_product));
        }
    }
}
