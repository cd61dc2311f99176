//! The Pillow operations torchvision's automatic augmentation policies apply to Pillow
//! images, ported so that each gives Pillow's bytes: nearest-neighbour affine transforms
//! (Pillow's 16.16 fixed-point loop, and its scaling loop for pure translations), `rotate`
//! with its transposition shortcuts, `ImageEnhance`'s blends (sharpness through the `SMOOTH`
//! filter), and `ImageOps`' posterize, solarize, autocontrast and equalize tables.
//! `auto_augment.rs` tests every one against bytes torchvision 0.24 and Pillow 13 gave.

use super::transform::Picture;

impl Picture {
    /// Pillow's `Image.blend(degenerate, self, factor)` as `ImageEnhance` calls it:
    /// `degenerate + factor × (self − degenerate)` in single precision, truncated and clipped.
    /// `degenerate` gives the other image's value at a byte's index.
    pub(super) fn blend_from(&mut self, degenerate: impl Fn(usize) -> u8, factor: f64) {
        let alpha = factor as f32;
        for (i, value) in self.pixels.iter_mut().enumerate() {
            let base = i32::from(degenerate(i));
            let blended = base as f32 + alpha * (i32::from(*value) - base) as f32;
            *value = clip8(blended);
        }
    }

    /// `ImageEnhance.Sharpness`: a blend with the picture under Pillow's `SMOOTH` filter.
    pub(super) fn sharpen(&mut self, factor: f64) {
        let smooth = self.smoothed();
        self.blend_from(|i| smooth[i], factor);
    }

    /// `ImageFilter.SMOOTH` (3×3 kernel 1 1 1 / 1 5 1 / 1 1 1, over 13): the border kept.
    fn smoothed(&self) -> Vec<u8> {
        let (width, height, channels) = (self.width, self.height, self.channels);
        let mut out = self.pixels.clone();
        if width < 3 || height < 3 {
            return out;
        }
        let edge = 1.0f32 / 13.0;
        let centre = 5.0f32 / 13.0;
        let kernel = [edge, edge, edge, edge, centre, edge, edge, edge, edge];
        let at =
            |x: usize, y: usize, c: usize| f32::from(self.pixels[(y * width + x) * channels + c]);
        for y in 1..height - 1 {
            for x in 1..width - 1 {
                for c in 0..channels {
                    let mut sum = 0.5f32;
                    for (row, y_in) in [y + 1, y, y - 1].into_iter().enumerate() {
                        let k = &kernel[row * 3..row * 3 + 3];
                        sum += at(x - 1, y_in, c) * k[0]
                            + at(x, y_in, c) * k[1]
                            + at(x + 1, y_in, c) * k[2];
                    }
                    out[(y * width + x) * channels + c] = clip8(sum);
                }
            }
        }
        out
    }

    /// Pillow's `transform(size, AFFINE, matrix, NEAREST)`: output pixel (x, y) takes the
    /// input at `matrix · (x + ½, y + ½, 1)`, black outside.
    pub(super) fn affine_nearest(&self, a: [f64; 6]) -> Picture {
        let (width, height, channels) = (self.width, self.height, self.channels);
        let mut out = vec![0u8; self.pixels.len()];
        let mut put = |x: usize, y: usize, x_in: i64, y_in: i64| {
            if (0..width as i64).contains(&x_in) && (0..height as i64).contains(&y_in) {
                let from = (y_in as usize * width + x_in as usize) * channels;
                let to = (y * width + x) * channels;
                out[to..to + channels].copy_from_slice(&self.pixels[from..from + channels]);
            }
        };
        let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
        let fits = |x: f64, y: f64| {
            (x * a[0] + y * a[1] + a[2]).abs() < 32768.0
                && (x * a[3] + y * a[4] + a[5]).abs() < 32768.0
        };
        let (w, h) = (width as f64, height as f64);
        if a[1] == 0.0 && a[3] == 0.0 {
            // ImagingScaleAffine: columns tabulated once, rows stepped.
            let mut x_origin = a[2] + a[0] * 0.5;
            let columns: Vec<i64> = (0..width)
                .map(|_| {
                    let column = coord(x_origin);
                    x_origin += a[0];
                    column
                })
                .collect();
            let mut y_origin = a[5] + a[4] * 0.5;
            for y in 0..height {
                let row = coord(y_origin);
                for (x, &column) in columns.iter().enumerate() {
                    put(x, y, column, row);
                }
                y_origin += a[4];
            }
        } else if fits(0.0, 0.0) && fits(w, h) && fits(0.0, h) && fits(w, 0.0) {
            // affine_fixed: 16.16 fixed point, stepped per pixel and per row.
            let fix = |v: f64| (v * 65536.0 + 0.5).floor() as i64;
            let (a0, a1, a3, a4) = (fix(a[0]), fix(a[1]), fix(a[3]), fix(a[4]));
            let mut row_x = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
            let mut row_y = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
            for y in 0..height {
                let (mut xx, mut yy) = (row_x, row_y);
                for x in 0..width {
                    put(x, y, xx >> 16, yy >> 16);
                    xx += a0;
                    yy += a3;
                }
                row_x += a1;
                row_y += a4;
            }
        } else {
            let mut x_origin = a[2] + a[1] * 0.5 + a[0] * 0.5;
            let mut y_origin = a[5] + a[4] * 0.5 + a[3] * 0.5;
            for y in 0..height {
                let (mut xx, mut yy) = (x_origin, y_origin);
                for x in 0..width {
                    put(x, y, coord(xx), coord(yy));
                    xx += a[0];
                    yy += a[3];
                }
                x_origin += a[1];
                y_origin += a[4];
            }
        }
        Picture {
            pixels: out,
            ..*self
        }
    }

    /// Pillow's `rotate(degrees, NEAREST)` counter-clockwise about the centre, size kept:
    /// 0° and 180° (and 90°, 270° of a square) as exact transpositions, as Pillow shortcuts them.
    pub(super) fn rotate_nearest(&self, degrees: f64) -> Picture {
        let angle = degrees.rem_euclid(360.0);
        let square = self.width == self.height;
        let turns = match angle {
            0.0 => Some(0),
            90.0 if square => Some(1),
            180.0 => Some(2),
            270.0 if square => Some(3),
            _ => None,
        };
        if let Some(turns) = turns {
            return self.quarter_turns(turns);
        }
        let radians = -angle.to_radians();
        let round15 = |v: f64| (v * 1e15).round() / 1e15;
        let (cos, sin) = (round15(radians.cos()), round15(radians.sin()));
        let mut matrix = [cos, sin, 0.0, round15(-radians.sin()), cos, 0.0];
        let (cx, cy) = (self.width as f64 / 2.0, self.height as f64 / 2.0);
        matrix[2] = matrix[0] * -cx + matrix[1] * -cy + cx;
        matrix[5] = matrix[3] * -cx + matrix[4] * -cy + cy;
        self.affine_nearest(matrix)
    }

    /// The picture turned counter-clockwise by `turns` quarter turns (a square for 1 and 3).
    fn quarter_turns(&self, turns: usize) -> Picture {
        let (width, height, channels) = (self.width, self.height, self.channels);
        let mut out = vec![0u8; self.pixels.len()];
        for y in 0..height {
            for x in 0..width {
                let (x_in, y_in) = match turns {
                    0 => (x, y),
                    1 => (width - 1 - y, x),
                    2 => (width - 1 - x, height - 1 - y),
                    _ => (y, height - 1 - x),
                };
                let from = (y_in * width + x_in) * channels;
                let to = (y * width + x) * channels;
                out[to..to + channels].copy_from_slice(&self.pixels[from..from + channels]);
            }
        }
        Picture {
            pixels: out,
            ..*self
        }
    }

    /// Every byte through a per-channel table (Pillow's `point` with a lookup table).
    fn apply_tables(&mut self, tables: &[[u8; 256]]) {
        let channels = self.channels;
        for (i, value) in self.pixels.iter_mut().enumerate() {
            *value = tables[i % channels][usize::from(*value)];
        }
    }

    /// One 256-bin histogram per channel.
    fn histograms(&self) -> Vec<[u64; 256]> {
        let mut histograms = vec![[0u64; 256]; self.channels];
        for (i, &value) in self.pixels.iter().enumerate() {
            histograms[i % self.channels][usize::from(value)] += 1;
        }
        histograms
    }

    /// `ImageOps.posterize`: each value keeps its `bits` highest bits.
    pub(super) fn posterize(&mut self, bits: u32) {
        let mask = !((1u32 << (8 - bits.min(8))) - 1) as u8;
        let table = std::array::from_fn(|i| i as u8 & mask);
        self.apply_tables(&vec![table; self.channels]);
    }

    /// `ImageOps.solarize`: values at or above `threshold` inverted.
    pub(super) fn solarize(&mut self, threshold: f64) {
        let table = std::array::from_fn(|i| match (i as f64) < threshold {
            true => i as u8,
            false => 255 - i as u8,
        });
        self.apply_tables(&vec![table; self.channels]);
    }

    /// `ImageOps.autocontrast`: each channel's darkest value to 0 and brightest to 255.
    pub(super) fn autocontrast(&mut self) {
        let tables: Vec<[u8; 256]> = self
            .histograms()
            .iter()
            .map(|histogram| {
                let low = histogram.iter().position(|&n| n > 0).unwrap_or(0);
                let high = histogram.iter().rposition(|&n| n > 0).unwrap_or(0);
                if high <= low {
                    return std::array::from_fn(|i| i as u8);
                }
                let scale = 255.0 / (high - low) as f64;
                let offset = -(low as f64) * scale;
                std::array::from_fn(|i| ((i as f64 * scale + offset) as i64).clamp(0, 255) as u8)
            })
            .collect();
        self.apply_tables(&tables);
    }

    /// `ImageOps.equalize`: each channel's cumulative histogram made (nearly) linear.
    pub(super) fn equalize(&mut self) {
        let tables: Vec<[u8; 256]> = self
            .histograms()
            .iter()
            .map(|histogram| {
                let used: Vec<u64> = histogram.iter().copied().filter(|&n| n > 0).collect();
                let step = match used.len() {
                    0 | 1 => 0,
                    _ => (used.iter().sum::<u64>() - used[used.len() - 1]) / 255,
                };
                if step == 0 {
                    return std::array::from_fn(|i| i as u8);
                }
                let mut n = step / 2;
                std::array::from_fn(|i| {
                    let value = (n / step).min(255) as u8;
                    n += histogram[i];
                    value
                })
            })
            .collect();
        self.apply_tables(&tables);
    }
}

/// Pillow's `clip8`: clipped to [0, 255], truncated.
fn clip8(value: f32) -> u8 {
    if value <= 0.0 {
        0
    } else if value >= 255.0 {
        255
    } else {
        value as u8
    }
}
