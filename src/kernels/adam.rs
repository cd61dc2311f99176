//! One Adam (or AdamW) update of a parameter and its two moments in a single pass, in place
//! where the buffers are not shared: burn's Adam runs a dozen element-wise ops, each with a
//! buffer of its own. The arithmetic is burn's, in its order and with its f32 factors, so the
//! updates are the same to the bit.

use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

/// The scalars of one step.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// AdamW: decay the weights directly rather than adding to the gradient.
    pub decoupled: bool,
    /// The step's number, from 1.
    pub time: usize,
}

/// The factors burn's `AdaptiveMomentum` computes once per step.
#[derive(Clone, Copy)]
pub struct Factors {
    beta_1: f32,
    keep_1: f32,
    beta_2: f32,
    keep_2: f32,
    /// The bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ (AdamW divides the moments by them).
    correction_1: f32,
    correction_2: f32,
    /// √(1 − β₂ᵗ) / (1 − β₁ᵗ) (Adam folds the corrections into one factor).
    combined: f32,
    /// ε, times √(1 − β₂ᵗ) for Adam.
    epsilon: f32,
    /// AdamW's form of the corrected ratio.
    decoupled: bool,
    /// The coupled weight decay added to the gradient (Adam), or 0.
    penalty: f32,
    /// 1 − lr · decay (AdamW), or 1.
    shrink: f32,
    lr: f32,
    /// The first step: the moments start from the gradient alone, as burn's do.
    first: bool,
}

impl Factors {
    pub fn new(step: &AdamStep) -> Self {
        let time = step.time as i32;
        let (correction_1, correction_2) =
            (1.0 - step.beta_1.powi(time), 1.0 - step.beta_2.powi(time));
        let decoupled = step.decoupled && step.weight_decay != 0.0;
        Self {
            beta_1: step.beta_1,
            keep_1: 1.0 - step.beta_1,
            beta_2: step.beta_2,
            keep_2: 1.0 - step.beta_2,
            correction_1,
            correction_2,
            combined: correction_2.sqrt() / correction_1,
            epsilon: if step.decoupled {
                step.epsilon
            } else {
                step.epsilon * correction_2.sqrt()
            },
            decoupled: step.decoupled,
            penalty: if step.decoupled {
                0.0
            } else {
                step.weight_decay
            },
            shrink: if decoupled {
                (1.0 - step.lr * step.weight_decay as f64) as f32
            } else {
                1.0
            },
            lr: step.lr as f32,
            first: step.time == 1,
        }
    }
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Updates `param`, `moment_1` and `moment_2` in place from `grad`.
pub fn update(
    f: &Factors,
    param: &mut [f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
) {
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(
            moment_1
                .par_chunks_mut(CHUNK)
                .zip(moment_2.par_chunks_mut(CHUNK)),
        )
        .for_each(|((p, g), (m, v))| update_chunk(f, p, g, m, v));
}

/// [`update`] for a parameter shared with others (the model the trainer keeps): its new value
/// is written to a new buffer instead.
pub fn update_into(
    f: &Factors,
    param: &[f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
) -> Vec<f32> {
    let mut out = Vec::with_capacity(param.len());
    out.spare_capacity_mut()[..param.len()]
        .par_chunks_mut(CHUNK)
        .zip(param.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .zip(
            moment_1
                .par_chunks_mut(CHUNK)
                .zip(moment_2.par_chunks_mut(CHUNK)),
        )
        .for_each(|((out, (p, g)), (m, v))| update_chunk_into(f, p, g, m, v, out));
    // SAFETY: the chunks above wrote every element.
    unsafe { out.set_len(param.len()) };
    out
}

/// The new value of one parameter element, updating its moments: burn's ops in its order
/// (decay, moments, the bias-corrected ratio, the update).
#[inline(always)]
fn step(f: &Factors, p: f32, g: f32, m: &mut f32, v: &mut f32) -> f32 {
    let g = if f.penalty != 0.0 {
        p * f.penalty + g
    } else {
        g
    };
    if f.first {
        *m = g * f.keep_1;
        *v = g * g * f.keep_2;
    } else {
        *m = *m * f.beta_1 + g * f.keep_1;
        *v = *v * f.beta_2 + g * g * f.keep_2;
    }
    let delta = if f.decoupled {
        (*m / f.correction_1) / ((*v / f.correction_2).sqrt() + f.epsilon)
    } else {
        *m * f.combined / (v.sqrt() + f.epsilon)
    };
    let decayed = if f.shrink != 1.0 { p * f.shrink } else { p };
    decayed - delta * f.lr
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn update_chunk(
    f: &Factors,
    param: &mut [f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
) {
    for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(moment_1).zip(moment_2) {
        *p = step(f, *p, g, m, v);
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn update_chunk_into(
    f: &Factors,
    param: &[f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    out: &mut [MaybeUninit<f32>],
) {
    for ((((out, &p), &g), m), v) in out
        .iter_mut()
        .zip(param)
        .zip(grad)
        .zip(moment_1)
        .zip(moment_2)
    {
        out.write(step(f, p, g, m, v));
    }
}
