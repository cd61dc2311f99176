//! Max pooling over non-overlapping windows (stride = kernel, no padding), forward and
//! backward, one pass each: the backward pass writes every input position once, the window's
//! gradient at its maximum and zero elsewhere, instead of zeroing the input's gradient and
//! scattering into it through stored indices.
//!
//! The maximum of a window is its first largest value in row-major order, in both passes.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// One pooling call's sizes.
#[derive(Clone, Copy, Debug)]
pub struct Pool {
    /// Each plane's (one image's channel's) size.
    pub height: usize,
    pub width: usize,
    pub kernel: [usize; 2],
}

impl Pool {
    pub fn out(&self) -> [usize; 2] {
        [self.height / self.kernel[0], self.width / self.kernel[1]]
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    fn out_plane(&self) -> usize {
        let [h, w] = self.out();
        h * w
    }

    /// The input offset (within the plane) of window `(oh, ow)`'s first largest value.
    #[inline(always)]
    fn argmax(&self, plane: &[f32], oh: usize, ow: usize) -> usize {
        let [kh, kw] = self.kernel;
        let mut best = (oh * kh) * self.width + ow * kw;
        for i in 0..kh {
            let row = (oh * kh + i) * self.width + ow * kw;
            for j in 0..kw {
                if plane[row + j] > plane[best] {
                    best = row + j;
                }
            }
        }
        best
    }
}

/// `out[plane, oh, ow]` = the largest value of its window.
pub fn forward(p: &Pool, x: &[f32], out: &mut [MaybeUninit<f32>]) {
    out.par_chunks_mut(p.out_plane())
        .zip(x.par_chunks(p.plane()))
        .for_each(|(out, plane)| forward_plane(p, plane, out));
}

fn forward_plane(p: &Pool, plane: &[f32], out: &mut [MaybeUninit<f32>]) {
    let [_, ow_count] = p.out();
    for (oh, out) in out.chunks_mut(ow_count).enumerate() {
        if p.kernel == [2, 2] {
            let top = &plane[2 * oh * p.width..][..2 * ow_count];
            let bottom = &plane[(2 * oh + 1) * p.width..][..2 * ow_count];
            for ((out, t), b) in out
                .iter_mut()
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                out.write(first_max([t[0], t[1], b[0], b[1]]).1);
            }
        } else {
            for (ow, out) in out.iter_mut().enumerate() {
                out.write(plane[p.argmax(plane, oh, ow)]);
            }
        }
    }
}

/// The index and value of the first largest of a 2×2 window (in row-major order).
#[inline(always)]
fn first_max(window: [f32; 4]) -> (usize, f32) {
    let mut best = (0, window[0]);
    for (i, &v) in window.iter().enumerate().skip(1) {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// The input's gradient: each window's gradient at its maximum, zero elsewhere (and in the
/// rows and columns past the last whole window).
pub fn backward(p: &Pool, x: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
    dx.par_chunks_mut(p.plane())
        .zip(x.par_chunks(p.plane()).zip(dy.par_chunks(p.out_plane())))
        .for_each(|(dx, (plane, dy))| backward_plane(p, plane, dy, dx));
}

fn backward_plane(p: &Pool, plane: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
    let [oh_count, ow_count] = p.out();
    let zero = MaybeUninit::new(0.0);
    if p.kernel != [2, 2] {
        dx.fill(zero);
        for oh in 0..oh_count {
            for ow in 0..ow_count {
                dx[p.argmax(plane, oh, ow)].write(dy[oh * ow_count + ow]);
            }
        }
        return;
    }
    for (oh, dy) in dy.chunks(ow_count).enumerate() {
        let (rows, _) = dx[2 * oh * p.width..].split_at_mut(2 * p.width);
        let (dx_top, dx_bottom) = rows.split_at_mut(p.width);
        let top = &plane[2 * oh * p.width..][..2 * ow_count];
        let bottom = &plane[(2 * oh + 1) * p.width..][..2 * ow_count];
        let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
        let targets = dx_top
            .chunks_exact_mut(2)
            .zip(dx_bottom.chunks_exact_mut(2));
        for (((t, b), (dt, db)), &g) in windows.zip(targets).zip(dy) {
            let (index, _) = first_max([t[0], t[1], b[0], b[1]]);
            let put = |i: usize| MaybeUninit::new(if i == index { g } else { 0.0 });
            (dt[0], dt[1], db[0], db[1]) = (put(0), put(1), put(2), put(3));
        }
        // An odd last column belongs to no window.
        dx_top[2 * ow_count..].fill(zero);
        dx_bottom[2 * ow_count..].fill(zero);
    }
    // An odd last row belongs to no window.
    dx[2 * oh_count * p.width..].fill(zero);
}
