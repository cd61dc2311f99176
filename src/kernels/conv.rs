//! 2-D convolution of f32 NCHW buffers as matrix multiplies over im2col patches, forward and
//! backward, as PyTorch's CPU path does. Per image and group, with `col` the `[K, P]` matrix of
//! input patches (K = channels per group × kernel area, P = output positions):
//!
//! - forward: `y = W · col` (`[F, K] · [K, P]`), written straight into NCHW;
//! - weight gradient: `dW += dy · colᵀ`, summed over the batch;
//! - input gradient: `dcol = Wᵀ · dy`, then scattered back onto the image (col2im).
//!
//! Images are split across threads, each multiplying with gemm on one thread; a batch smaller
//! than the thread count runs image by image with gemm's own threads instead.

use burn::tensor::ops::ConvOptions;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::gemm::{Dst, Parallelism, Src, matmul};
use super::math;
use super::scratch::scratch;

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub filters: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Padding before the first row and column (the padding after only shapes `out`).
    pub padding: [usize; 2],
    pub groups: usize,
    pub out: [usize; 2],
}

impl Geometry {
    /// `x`: `[batch, channels, height, width]`; `weight`: `[filters, channels / groups, kh, kw]`.
    pub fn new(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> Self {
        let [batch, channels, height, width] = x;
        let [filters, _, kh, kw] = weight;
        let out = |size: usize, dim: usize, kernel: usize| {
            let (begin, end) = options.padding[dim];
            (size + begin + end - options.dilation[dim] * (kernel - 1) - 1) / options.stride[dim]
                + 1
        };
        Self {
            batch,
            channels,
            height,
            width,
            filters,
            kernel: [kh, kw],
            stride: options.stride,
            dilation: options.dilation,
            padding: options.padding_begin(),
            groups: options.groups,
            out: [out(height, 0, kh), out(width, 1, kw)],
        }
    }

    fn group_channels(&self) -> usize {
        self.channels / self.groups
    }

    fn group_filters(&self) -> usize {
        self.filters / self.groups
    }

    /// K: one patch's length.
    fn patch(&self) -> usize {
        self.group_channels() * self.kernel[0] * self.kernel[1]
    }

    /// P: output positions per image.
    fn positions(&self) -> usize {
        self.out[0] * self.out[1]
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn output_len(&self) -> usize {
        self.filters * self.positions()
    }

    pub fn weight_len(&self) -> usize {
        self.filters * self.patch()
    }

    /// A 1×1, stride-1, unpadded convolution: the image itself is the patch matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// How the batch is worked through: tasks of `IMAGES_PER_TASK` images, in parallel when
    /// there are enough of them for every thread, otherwise one after another with gemm's own
    /// threads. Either way each task sums its images' gradients in image order and the tasks'
    /// sums are added in task order, so the result does not depend on the thread count.
    fn parallelism(&self) -> Parallelism {
        let threads = rayon::current_num_threads().max(1);
        if self.batch.div_ceil(IMAGES_PER_TASK) >= threads {
            Parallelism::None
        } else {
            Parallelism::Rayon(threads)
        }
    }
}

/// Images per task (see [`Geometry::parallelism`]).
const IMAGES_PER_TASK: usize = 4;

/// `y = conv(x, weight) + bias`; `y` holds `batch × output_len` elements, written and never
/// read before (it may be uninitialised).
pub fn forward(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    let (per_task, parallelism) = (IMAGES_PER_TASK, g.parallelism());
    let task = |(task, y): (usize, &mut [MaybeUninit<f32>])| {
        let mut col = scratch(if g.is_pointwise() {
            0
        } else {
            g.patch() * g.positions()
        });
        for (i, y) in y.chunks_mut(g.output_len()).enumerate() {
            let image = &x[(task * per_task + i) * g.image_len()..][..g.image_len()];
            // The bias is what gemm adds the products to.
            if let Some(bias) = bias {
                for (row, &b) in y.chunks_mut(g.positions()).zip(bias) {
                    row.fill(MaybeUninit::new(b));
                }
            }
            for group in 0..g.groups {
                let col = patches(g, image, group, &mut col);
                let filters = group * g.group_filters();
                // y[filters.., :] = W_group · col
                unsafe {
                    matmul(
                        [g.group_filters(), g.positions(), g.patch()],
                        Dst::new(
                            y[filters * g.positions()..].as_mut_ptr().cast(),
                            g.positions(),
                            bias.is_some(),
                        ),
                        Src::rows(weight[filters * g.patch()..].as_ptr(), g.patch()),
                        Src::rows(col.as_ptr(), g.positions()),
                        parallelism,
                    )
                };
            }
        }
    };
    run(
        y.chunks_mut(per_task * g.output_len()).enumerate(),
        parallelism,
        task,
    );
}

/// What the backward pass writes: each gradient that is asked for.
pub struct Gradients<'a> {
    /// `[batch, channels, height, width]`, overwritten.
    pub x: Option<&'a mut [f32]>,
    /// `[filters, channels / groups, kh, kw]`, overwritten.
    pub weight: Option<&'a mut [f32]>,
    /// `[filters]`, overwritten.
    pub bias: Option<&'a mut [f32]>,
}

/// The gradients of the loss with respect to `x`, the weight and the bias, from `dy`.
pub fn backward(g: &Geometry, x: &[f32], weight: &[f32], dy: &[f32], out: Gradients<'_>) {
    let (per_task, parallelism) = (IMAGES_PER_TASK, g.parallelism());
    let tasks = g.batch.div_ceil(per_task);
    let (want_weight, want_bias) = (out.weight.is_some(), out.bias.is_some());
    // Each task sums its images' weight and bias gradients; the tasks' sums are added at the end.
    let task = |task: usize, dx: Option<&mut [f32]>| -> (Vec<f32>, Vec<f32>) {
        let mut dw = vec![0.0; if want_weight { g.weight_len() } else { 0 }];
        let mut db = vec![0.0; if want_bias { g.filters } else { 0 }];
        let patch_matrix = g.patch() * g.positions();
        let mut col = scratch(if want_weight && !g.is_pointwise() {
            patch_matrix
        } else {
            0
        });
        let mut dcol = scratch(if dx.is_some() && !g.is_pointwise() {
            patch_matrix
        } else {
            0
        });
        let first = task * per_task;
        let images = per_task.min(g.batch - first);
        let mut dx = dx;
        for i in 0..images {
            let image = &x[(first + i) * g.image_len()..][..g.image_len()];
            let dy = &dy[(first + i) * g.output_len()..][..g.output_len()];
            for group in 0..g.groups {
                let filters = group * g.group_filters();
                let dy_group = Src::rows(dy[filters * g.positions()..].as_ptr(), g.positions());
                if want_weight {
                    let col = patches(g, image, group, &mut col);
                    // dW_group += dy_group · colᵀ
                    unsafe {
                        matmul(
                            [g.group_filters(), g.patch(), g.positions()],
                            Dst::new(dw[filters * g.patch()..].as_mut_ptr(), g.patch(), true),
                            dy_group,
                            Src::transposed(col.as_ptr(), g.positions()),
                            parallelism,
                        )
                    };
                }
                if let Some(dx) = dx.as_deref_mut() {
                    let dx_image = &mut dx[i * g.image_len()..][..g.image_len()];
                    let channels = group * g.group_channels() * g.height * g.width;
                    // The pointwise patch matrix is the image: its gradient is written in place.
                    let target = if g.is_pointwise() {
                        dx_image[channels..].as_mut_ptr()
                    } else {
                        dcol.as_mut_ptr()
                    };
                    // dcol = W_groupᵀ · dy_group
                    unsafe {
                        matmul(
                            [g.patch(), g.positions(), g.group_filters()],
                            Dst::new(target, g.positions(), false),
                            Src::transposed(weight[filters * g.patch()..].as_ptr(), g.patch()),
                            dy_group,
                            parallelism,
                        )
                    };
                    if !g.is_pointwise() {
                        scatter_patches(g, &dcol, group, dx_image);
                    }
                }
            }
            for (sum, row) in db.iter_mut().zip(dy.chunks(g.positions())) {
                *sum += math::sum(row);
            }
        }
        (dw, db)
    };
    let sums: Vec<(Vec<f32>, Vec<f32>)> = match out.x {
        Some(dx) => {
            dx.fill(0.0);
            let chunks = dx.chunks_mut(per_task * g.image_len()).enumerate();
            collect(chunks, parallelism, |(t, dx)| task(t, Some(dx)))
        }
        None => collect((0..tasks).map(|t| (t, ())), parallelism, |(t, ())| {
            task(t, None)
        }),
    };
    if let Some(weight_grad) = out.weight {
        add_up(weight_grad, sums.iter().map(|(dw, _)| dw));
    }
    if let Some(bias_grad) = out.bias {
        add_up(bias_grad, sums.iter().map(|(_, db)| db));
    }
}

fn add_up<'a>(out: &mut [f32], parts: impl Iterator<Item = &'a Vec<f32>>) {
    out.fill(0.0);
    for part in parts {
        out.iter_mut().zip(part).for_each(|(o, p)| *o += p);
    }
}

/// Runs `task` over `items`, in parallel across tasks unless gemm parallelises instead.
fn run<T: Send>(
    items: impl Iterator<Item = T>,
    parallelism: Parallelism,
    task: impl Fn(T) + Sync + Send,
) {
    collect(items, parallelism, task);
}

/// `task` of each item, in the items' order.
fn collect<T: Send, R: Send>(
    items: impl Iterator<Item = T>,
    parallelism: Parallelism,
    task: impl Fn(T) -> R + Sync + Send,
) -> Vec<R> {
    match parallelism {
        Parallelism::None => items
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(task)
            .collect(),
        _ => items.map(task).collect(),
    }
}

/// The patch matrix of `group` in `image`: `col` filled by im2col, or the image itself for a
/// pointwise convolution.
fn patches<'a>(g: &Geometry, image: &'a [f32], group: usize, col: &'a mut [f32]) -> &'a [f32] {
    let plane = g.height * g.width;
    let channels = &image[group * g.group_channels() * plane..][..g.group_channels() * plane];
    if g.is_pointwise() {
        return channels;
    }
    for_each_patch_row(g, |c, ki, kj, row| {
        let plane = &channels[c * plane..][..plane];
        let row_out = &mut col[row * g.positions()..][..g.positions()];
        for oh in 0..g.out[0] {
            let out = &mut row_out[oh * g.out[1]..][..g.out[1]];
            match input_row(g, oh, ki) {
                Some(ih) => {
                    let src = &plane[ih * g.width..][..g.width];
                    let (lo, hi) = valid_columns(g, kj);
                    out[..lo].fill(0.0);
                    out[hi.max(lo)..].fill(0.0);
                    if g.stride[1] == 1 && lo < hi {
                        let first = input_column(g, lo, kj);
                        out[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                    } else {
                        for ow in lo..hi {
                            out[ow] = src[input_column(g, ow, kj)];
                        }
                    }
                }
                None => out.fill(0.0),
            }
        }
    });
    col
}

/// col2im: adds each patch matrix entry of `dcol` onto the pixel it was read from.
fn scatter_patches(g: &Geometry, dcol: &[f32], group: usize, dx_image: &mut [f32]) {
    let plane = g.height * g.width;
    let channels =
        &mut dx_image[group * g.group_channels() * plane..][..g.group_channels() * plane];
    for_each_patch_row(g, |c, ki, kj, row| {
        let plane = &mut channels[c * plane..][..plane];
        let row_in = &dcol[row * g.positions()..][..g.positions()];
        for oh in 0..g.out[0] {
            if let Some(ih) = input_row(g, oh, ki) {
                let src = &row_in[oh * g.out[1]..][..g.out[1]];
                let dst = &mut plane[ih * g.width..][..g.width];
                let (lo, hi) = valid_columns(g, kj);
                if g.stride[1] == 1 && lo < hi {
                    let first = input_column(g, lo, kj);
                    let dst = &mut dst[first..first + hi - lo];
                    dst.iter_mut().zip(&src[lo..hi]).for_each(|(d, s)| *d += s);
                } else {
                    for ow in lo..hi {
                        dst[input_column(g, ow, kj)] += src[ow];
                    }
                }
            }
        }
    });
}

/// Calls `f(channel, kernel row, kernel column, patch row)` for each row of the patch matrix.
fn for_each_patch_row(g: &Geometry, mut f: impl FnMut(usize, usize, usize, usize)) {
    let mut row = 0;
    for c in 0..g.group_channels() {
        for ki in 0..g.kernel[0] {
            for kj in 0..g.kernel[1] {
                f(c, ki, kj, row);
                row += 1;
            }
        }
    }
}

/// The input row output row `oh` reads at kernel row `ki`, if it is inside the image.
fn input_row(g: &Geometry, oh: usize, ki: usize) -> Option<usize> {
    (oh * g.stride[0] + ki * g.dilation[0])
        .checked_sub(g.padding[0])
        .filter(|&ih| ih < g.height)
}

fn input_column(g: &Geometry, ow: usize, kj: usize) -> usize {
    ow * g.stride[1] + kj * g.dilation[1] - g.padding[1]
}

/// The output columns `[lo, hi)` whose input column at kernel column `kj` is inside the image.
fn valid_columns(g: &Geometry, kj: usize) -> (usize, usize) {
    let offset = kj * g.dilation[1];
    let stride = g.stride[1];
    // ow·stride + offset ≥ padding, and ow·stride + offset - padding < width.
    let lo = g.padding[1].saturating_sub(offset).div_ceil(stride);
    let hi = (g.width + g.padding[1])
        .checked_sub(offset)
        .map_or(0, |limit| limit.div_ceil(stride))
        .min(g.out[1]);
    (lo.min(g.out[1]), hi)
}
