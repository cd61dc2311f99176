//! Linear layers (`y = x · W + b`, `W` stored `[inputs, outputs]` as burn's `Linear` holds it)
//! on gemm, forward and backward, for `x` of any rank flattened to `[rows, inputs]`.
//!
//! Outputs are written by gemm into fresh allocations (no zero fill first), the bias is the
//! value gemm accumulates onto, and the weight gradient `xᵀ · dy`, whose inner dimension is
//! the long one, is split over fixed blocks of rows multiplied on one thread each and added in
//! block order: gemm parallelises only over the output, which for a weight is small, and the
//! fixed blocks keep the sum independent of the thread count.

use rayon::prelude::*;

use super::gemm::{Dst, Parallelism, Src, matmul};

/// Rows per block of the weight gradient.
const ROWS_PER_BLOCK: usize = 512;

/// The sizes: `rows` of `inputs` values in, `outputs` out.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub rows: usize,
    pub inputs: usize,
    pub outputs: usize,
}

fn threads() -> Parallelism {
    Parallelism::Rayon(rayon::current_num_threads().max(1))
}

/// `x · W (+ b)`, `[rows, outputs]`.
pub fn forward(s: Shape, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let len = s.rows * s.outputs;
    let mut y = Vec::with_capacity(len);
    if let Some(bias) = bias {
        for _ in 0..s.rows {
            y.extend_from_slice(bias);
        }
    }
    // SAFETY: `y` has room for `rows × outputs`; gemm writes every element (or adds to the
    // bias rows already there) before the length covers them.
    unsafe {
        matmul(
            [s.rows, s.outputs, s.inputs],
            Dst::new(y.as_mut_ptr(), s.outputs, bias.is_some()),
            Src::rows(x.as_ptr(), s.inputs),
            Src::rows(weight.as_ptr(), s.outputs),
            threads(),
        );
        y.set_len(len);
    }
    y
}

/// `dy · Wᵀ`, `[rows, inputs]`.
pub fn x_grad(s: Shape, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    let len = s.rows * s.inputs;
    let mut dx = Vec::with_capacity(len);
    // SAFETY: as in `forward`; gemm writes all of `dx`.
    unsafe {
        matmul(
            [s.rows, s.inputs, s.outputs],
            Dst::new(dx.as_mut_ptr(), s.inputs, false),
            Src::rows(dy.as_ptr(), s.outputs),
            Src::transposed(weight.as_ptr(), s.outputs),
            threads(),
        );
        dx.set_len(len);
    }
    dx
}

/// `xᵀ · dy`, `[inputs, outputs]`.
pub fn weight_grad(s: Shape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let blocks = s.rows.div_ceil(ROWS_PER_BLOCK);
    let block = |b: usize, parallelism: Parallelism| {
        let first = b * ROWS_PER_BLOCK;
        let rows = ROWS_PER_BLOCK.min(s.rows - first);
        let len = s.inputs * s.outputs;
        let mut dw = Vec::with_capacity(len);
        // SAFETY: as in `forward`; gemm writes all of `dw`.
        unsafe {
            matmul(
                [s.inputs, s.outputs, rows],
                Dst::new(dw.as_mut_ptr(), s.outputs, false),
                Src::transposed(x[first * s.inputs..].as_ptr(), s.inputs),
                Src::rows(dy[first * s.outputs..].as_ptr(), s.outputs),
                parallelism,
            );
            dw.set_len(len);
        }
        dw
    };
    if blocks < 2 {
        return block(0, threads());
    }
    let partial: Vec<Vec<f32>> = (0..blocks)
        .into_par_iter()
        .map(|b| block(b, Parallelism::None))
        .collect();
    let mut partial = partial.into_iter();
    let mut dw = partial.next().expect("at least one block");
    for part in partial {
        dw.iter_mut().zip(&part).for_each(|(sum, v)| *sum += v);
    }
    dw
}

/// The bias gradient: `dy` summed over the rows, in fixed blocks as the weight's.
pub fn bias_grad(s: Shape, dy: &[f32]) -> Vec<f32> {
    let partial: Vec<Vec<f32>> = dy
        .par_chunks(ROWS_PER_BLOCK * s.outputs)
        .map(|rows| {
            let mut sum = vec![0.0; s.outputs];
            for row in rows.chunks(s.outputs) {
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            sum
        })
        .collect();
    let mut db = vec![0.0; s.outputs];
    for part in &partial {
        db.iter_mut().zip(part).for_each(|(sum, v)| *sum += v);
    }
    db
}
