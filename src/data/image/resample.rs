//! Pillow's resampling (`Image.resize`, libImaging's `Resample.c`), ported so that resized
//! photos are the bytes timm and torchvision feed their models: a separable convolution whose
//! support widens with the downscale factor (antialiasing), coefficients in double precision
//! normalised and rounded to 22-bit fixed point, the horizontal pass first over just the rows
//! the vertical pass reads, each pass rounded and clipped to bytes. Integer arithmetic after
//! the coefficients, so the result is the same on every CPU. (`fast_image_resize`, a port of
//! Pillow-SIMD, was tried first: its coefficients differ enough to move real photos by up to
//! four levels.)

use crate::config::Interpolation;

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// For each output pixel along one axis: the first input pixel it reads, how many, and the
/// fixed-point weights (`ksize` slots each).
struct Coefficients {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for `in_size` pixels resized to
/// `out_size`.
fn coefficients(in_size: usize, out_size: usize, interpolation: Interpolation) -> Coefficients {
    let (filter, support): (fn(f64) -> f64, f64) = match interpolation {
        Interpolation::Bilinear => (bilinear, 1.0),
        Interpolation::Bicubic => (bicubic, 2.0),
    };
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut total = 0.0;
        for (x, w) in k.iter_mut().enumerate().take(xmax) {
            *w = filter((x as f64 + xmin as f64 - center + 0.5) * ss);
            total += *w;
        }
        for (x, &w) in k.iter().enumerate().take(xmax) {
            let w = if total != 0.0 { w / total } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[xx * ksize + x] = match w < 0.0 {
                true => (-0.5 + fixed) as i32,
                false => (0.5 + fixed) as i32,
            };
        }
        bounds.push((xmin, xmax));
    }
    Coefficients {
        ksize,
        bounds,
        weights,
    }
}

fn clip8(sum: i64) -> u8 {
    if sum >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if sum <= 0 {
        0
    } else {
        (sum >> PRECISION_BITS) as u8
    }
}

/// Interleaved `pixels` (`width × height × channels`) resized to `out_width × out_height`.
pub fn resize(
    pixels: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    (out_width, out_height): (usize, usize),
    interpolation: Interpolation,
) -> Vec<u8> {
    let horizontal = coefficients(width, out_width, interpolation);
    let vertical = coefficients(height, out_height, interpolation);
    // The rows the vertical pass reads, the only ones the horizontal pass computes.
    let first_row = vertical.bounds[0].0;
    let last_row = vertical
        .bounds
        .last()
        .map_or(0, |&(min, count)| min + count);
    let (source, source_width, row_offset) = if out_width != width {
        let rows = last_row - first_row;
        let mut temp = vec![0u8; out_width * rows * channels];
        for y in 0..rows {
            let row = &pixels[(y + first_row) * width * channels..][..width * channels];
            let out = &mut temp[y * out_width * channels..][..out_width * channels];
            for (xx, &(xmin, count)) in horizontal.bounds.iter().enumerate() {
                let k = &horizontal.weights[xx * horizontal.ksize..][..count];
                for c in 0..channels {
                    let mut sum = 1i64 << (PRECISION_BITS - 1);
                    for (x, &w) in k.iter().enumerate() {
                        sum += i64::from(row[(xmin + x) * channels + c]) * i64::from(w);
                    }
                    out[xx * channels + c] = clip8(sum);
                }
            }
        }
        (std::borrow::Cow::Owned(temp), out_width, first_row)
    } else {
        (std::borrow::Cow::Borrowed(pixels), width, 0)
    };
    if out_height == height {
        return source.into_owned();
    }
    let row_len = source_width * channels;
    let mut out = vec![0u8; out_height * row_len];
    for (yy, &(ymin, count)) in vertical.bounds.iter().enumerate() {
        let k = &vertical.weights[yy * vertical.ksize..][..count];
        let target = &mut out[yy * row_len..][..row_len];
        for (i, value) in target.iter_mut().enumerate() {
            let mut sum = 1i64 << (PRECISION_BITS - 1);
            for (y, &w) in k.iter().enumerate() {
                sum += i64::from(source[(ymin - row_offset + y) * row_len + i]) * i64::from(w);
            }
            *value = clip8(sum);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_size_is_the_same_image_and_flat_stays_flat() {
        let pixels: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7) as u8).collect();
        assert_eq!(
            resize(&pixels, (5, 4), 3, (5, 4), Interpolation::Bicubic),
            pixels
        );
        let flat = vec![77u8; 31 * 17];
        for interpolation in [Interpolation::Bilinear, Interpolation::Bicubic] {
            for size in [(8, 5), (40, 30), (31, 3)] {
                let out = resize(&flat, (31, 17), 1, size, interpolation);
                assert!(out.iter().all(|&v| v == 77), "{size:?} {interpolation:?}");
            }
        }
    }
}
