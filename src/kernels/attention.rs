//! Multi-head self-attention in one pass per head, forward and backward, in the manner of
//! FlashAttention: scores are made a block of query rows at a time and never stored whole,
//! the backward pass recomputes them from the saved log-sum-exp of each row, and attention
//! dropout is a counter-based mask recomputed the same way. q, k and v are read in place from
//! the fused projection `[batch, length, 3 · d_model]` (no head transposes), and the output is
//! written as `[batch, length, d_model]`.
//!
//! A query whose keys are all masked (an empty text) attends to nothing: its output is zero.

use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use super::dropout::Mask;
use super::gemm::{Dst, Parallelism, Src, matmul};
use super::math::{self, exp};
use super::scratch::scratch;

/// Query rows per block: a block's scores (`ROWS × length`) stay in the cache.
const ROWS: usize = 64;

/// One attention call's sizes and options.
#[derive(Clone, Copy)]
pub struct Attention {
    pub batch: usize,
    pub length: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Each query sees only the keys at or before its position.
    pub causal: bool,
    /// Dropout on the attention weights.
    pub dropout: Option<Mask>,
}

impl Attention {
    fn d_model(&self) -> usize {
        self.heads * self.head_dim
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// The keys query `i` of a block ending at `end` may see: `[0, limit)`, less padding.
    fn limit(&self, i: usize) -> usize {
        if self.causal { i + 1 } else { self.length }
    }

    /// Keys a block of queries `[start, end)` reads.
    fn columns(&self, end: usize) -> usize {
        if self.causal { end } else { self.length }
    }
}

/// A pointer the tasks of one call share; each writes its own rows and columns.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: tasks write disjoint elements (their own head's columns) through it.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not its field).
    fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// `out = softmax(q·kᵀ / √d_head, masked) · v` per head; `lse`, if given, receives each row's
/// log-sum-exp (`[batch, heads, length]`) for the backward pass.
/// `out` and `lse` are written, never read (they may be uninitialised).
pub fn forward(
    a: &Attention,
    qkv: &[f32],
    padding: &[u8],
    out: &mut [MaybeUninit<f32>],
    lse: Option<&mut [MaybeUninit<f32>]>,
) {
    let (t, d) = (a.length, a.d_model());
    assert_eq!(qkv.len(), a.batch * t * 3 * d);
    assert_eq!(out.len(), a.batch * t * d);
    let out = Shared(out.as_mut_ptr().cast());
    let lse = lse.map(|lse| {
        assert_eq!(lse.len(), a.batch * a.heads * t);
        Shared(lse.as_mut_ptr().cast())
    });
    (0..a.batch * a.heads).into_par_iter().for_each(|task| {
        let (b, h) = (task / a.heads, task % a.heads);
        let padding = &padding[b * t..][..t];
        let q = qkv[b * t * 3 * d + h * a.head_dim..].as_ptr();
        let (k, v) = unsafe { (q.add(d), q.add(2 * d)) };
        let mut scores = scratch(ROWS * t);
        for start in (0..t).step_by(ROWS) {
            let rows = ROWS.min(t - start);
            let cols = a.columns(start + rows);
            let scores = &mut scores[..rows * cols];
            // scores = q[start..] · kᵀ
            unsafe {
                matmul(
                    [rows, cols, a.head_dim],
                    Dst::new(scores.as_mut_ptr(), cols, false),
                    Src::rows(q.add(start * 3 * d), 3 * d),
                    Src::transposed(k, 3 * d),
                    Parallelism::None,
                )
            };
            for (r, row) in scores.chunks_mut(cols).enumerate() {
                let i = start + r;
                let row_lse = softmax_row(row, &padding[..cols], a.limit(i), a.scale());
                if let Some(lse) = lse {
                    unsafe { *lse.at(task * t + i) = row_lse };
                }
                if let Some(mask) = &a.dropout {
                    mask.apply_in_place_at(row, (task * t + i) * t);
                }
            }
            // out[start..] = weights · v
            unsafe {
                matmul(
                    [rows, a.head_dim, cols],
                    Dst::new(out.at((b * t + start) * d + h * a.head_dim), d, false),
                    Src::rows(scores.as_ptr(), cols),
                    Src::rows(v, 3 * d),
                    Parallelism::None,
                )
            };
        }
    });
}

/// The gradient with respect to `qkv` (written to `dqkv`), from the output's gradient `dout`,
/// the forward output `out` and its `lse`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    a: &Attention,
    qkv: &[f32],
    padding: &[u8],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dqkv: &mut [f32],
) {
    let (t, d) = (a.length, a.d_model());
    assert_eq!(dqkv.len(), qkv.len());
    dqkv.fill(0.0);
    let dqkv = Shared(dqkv.as_mut_ptr());
    (0..a.batch * a.heads).into_par_iter().for_each(|task| {
        let (b, h) = (task / a.heads, task % a.heads);
        let padding = &padding[b * t..][..t];
        let head = b * t * 3 * d + h * a.head_dim;
        let q = qkv[head..].as_ptr();
        let (k, v) = unsafe { (q.add(d), q.add(2 * d)) };
        let (dq, dk, dv) = (dqkv.at(head), dqkv.at(head + d), dqkv.at(head + 2 * d));
        let at = |row: usize| b * t * d + row * d + h * a.head_dim;
        // D_i = dout_i · out_i: the row sums of weights ∘ d weights.
        let row_dots: Vec<f32> = (0..t)
            .map(|i| math::dot(&out[at(i)..][..a.head_dim], &dout[at(i)..][..a.head_dim]))
            .collect();
        let (mut weights, mut dweights) = (scratch(ROWS * t), scratch(ROWS * t));
        for start in (0..t).step_by(ROWS) {
            let rows = ROWS.min(t - start);
            let cols = a.columns(start + rows);
            let weights = &mut weights[..rows * cols];
            let dweights = &mut dweights[..rows * cols];
            let dout_block = Src::rows(dout[at(start)..].as_ptr(), d);
            unsafe {
                matmul(
                    [rows, cols, a.head_dim],
                    Dst::new(weights.as_mut_ptr(), cols, false),
                    Src::rows(q.add(start * 3 * d), 3 * d),
                    Src::transposed(k, 3 * d),
                    Parallelism::None,
                )
            };
            // dweights' = dout · vᵀ (the gradient of the weights after dropout)
            unsafe {
                matmul(
                    [rows, cols, a.head_dim],
                    Dst::new(dweights.as_mut_ptr(), cols, false),
                    dout_block,
                    Src::transposed(v, 3 * d),
                    Parallelism::None,
                )
            };
            for (r, (row, drow)) in weights
                .chunks_mut(cols)
                .zip(dweights.chunks_mut(cols))
                .enumerate()
            {
                let i = start + r;
                let limit = a.limit(i);
                weights_row(row, &padding[..cols], limit, a.scale(), lse[task * t + i]);
                let first = (task * t + i) * t;
                if let Some(mask) = &a.dropout {
                    mask.apply_in_place_at(drow, first);
                }
                // dscores = weights ∘ (dweights − D_i), times the score scale.
                scores_grad_row(row, drow, row_dots[i], a.scale());
                if let Some(mask) = &a.dropout {
                    // dv needs the weights after dropout; the scores' gradient is in `drow`.
                    mask.apply_in_place_at(row, first);
                }
            }
            // dv += weights'ᵀ · dout
            unsafe {
                matmul(
                    [cols, a.head_dim, rows],
                    Dst::new(dv, 3 * d, true),
                    Src::transposed(weights.as_ptr(), cols),
                    dout_block,
                    Parallelism::None,
                )
            };
            // dq[start..] = dscores · k
            unsafe {
                matmul(
                    [rows, a.head_dim, cols],
                    Dst::new(dq.add(start * 3 * d), 3 * d, false),
                    Src::rows(dweights.as_ptr(), cols),
                    Src::rows(k, 3 * d),
                    Parallelism::None,
                )
            };
            // dk += dscoresᵀ · q[start..]
            unsafe {
                matmul(
                    [cols, a.head_dim, rows],
                    Dst::new(dk, 3 * d, true),
                    Src::transposed(dweights.as_ptr(), cols),
                    Src::rows(q.add(start * 3 * d), 3 * d),
                    Parallelism::None,
                )
            };
        }
    });
}

/// Scales `row` and masks the keys past `limit` or padded, then turns it into softmax weights
/// in place; returns its log-sum-exp (−∞ when every key is masked, and the weights are zero).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn softmax_row(row: &mut [f32], padding: &[u8], limit: usize, scale: f32) -> f32 {
    for (j, (s, &pad)) in row.iter_mut().zip(padding).enumerate() {
        *s = if j < limit && pad == 0 {
            *s * scale
        } else {
            f32::NEG_INFINITY
        };
    }
    let max = math::max(row);
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return max;
    }
    for s in row.iter_mut() {
        *s = if *s == f32::NEG_INFINITY {
            0.0
        } else {
            exp(*s - max)
        };
    }
    let sum = math::sum(row);
    let inverse = 1.0 / sum;
    row.iter_mut().for_each(|s| *s *= inverse);
    max + sum.ln()
}

/// The softmax weights of a row of raw scores again, from the row's log-sum-exp.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn weights_row(row: &mut [f32], padding: &[u8], limit: usize, scale: f32, lse: f32) {
    for (j, (s, &pad)) in row.iter_mut().zip(padding).enumerate() {
        *s = if j < limit && pad == 0 && lse > f32::NEG_INFINITY {
            exp(*s * scale - lse)
        } else {
            0.0
        };
    }
}

/// `dweights ← weights ∘ (dweights − row_dot) · scale`: the scores' gradient.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn scores_grad_row(weights: &[f32], dweights: &mut [f32], row_dot: f32, scale: f32) {
    for (g, &w) in dweights.iter_mut().zip(weights) {
        *g = w * (*g - row_dot) * scale;
    }
}
