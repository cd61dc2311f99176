//! Colour jitter on pictures, as torchvision's `ColorJitter` does it on Pillow images:
//! brightness, contrast and saturation as Pillow's blends (with black, the mean gray, the
//! picture's own grays: `pillow_ops.rs`) and hue as a shift of Pillow's 8-bit HSV hue, in a
//! random order, each truncated and clipped as Pillow does. The HSV conversions are ports of Pillow's `Convert.c`, so a
//! hue-shifted picture has the bytes Pillow gives.

use rand::Rng;

use super::transform::{Picture, uniform};

/// `[data.augment]`'s jitter strengths: brightness, contrast and saturation factors drawn
/// from [1 − x, 1 + x], the hue shift from [−hue, hue] (a share of the colour circle).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
}

impl Jitter {
    pub fn is_off(&self) -> bool {
        [self.brightness, self.contrast, self.saturation, self.hue]
            .iter()
            .all(|&x| x <= 0.0)
    }
}

impl Picture {
    /// torchvision's `ColorJitter` on a Pillow image: the four adjustments in a random order,
    /// each factor drawn where its strength is above 0. Hue leaves grayscale pictures alone,
    /// as Pillow's does.
    pub fn jitter_colour(&mut self, jitter: Jitter, rng: &mut impl Rng) {
        let mut order = [0usize, 1, 2, 3];
        for i in (1..4).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let factors = [jitter.brightness, jitter.contrast, jitter.saturation]
            .map(|x| (x > 0.0).then(|| uniform(rng, [(1.0 - x).max(0.0), 1.0 + x])));
        let hue = (jitter.hue > 0.0).then(|| uniform(rng, [-jitter.hue, jitter.hue]));
        for step in order {
            match step {
                3 => {
                    if let Some(shift) = hue {
                        self.shift_hue(shift);
                    }
                }
                _ => {
                    let Some(factor) = factors[step] else {
                        continue;
                    };
                    match step {
                        0 => self.blend_from(|_| 0, factor),
                        1 => {
                            let mean = self.mean_gray();
                            self.blend_from(|_| mean, factor)
                        }
                        _ => {
                            let grays = self.grays();
                            let channels = self.channels;
                            self.blend_from(|i| grays[i / channels], factor)
                        }
                    }
                }
            }
        }
    }

    /// torchvision's `adjust_hue` on a Pillow image: to HSV, the hue byte moved by
    /// `int(shift × 255)` with wrap-around, back to RGB.
    pub fn shift_hue(&mut self, shift: f64) {
        if self.channels != 3 {
            return;
        }
        // numpy's `np.int32(x).astype(np.uint8)`: truncated toward zero, then wrapped.
        let step = (shift * 255.0) as i32 as u8;
        for pixel in self.pixels.chunks_exact_mut(3) {
            let [h, s, v] = rgb_to_hsv([pixel[0], pixel[1], pixel[2]]);
            pixel.copy_from_slice(&hsv_to_rgb([h.wrapping_add(step), s, v]));
        }
    }

    /// Each pixel's gray level (ITU-R 601-2 luma, Pillow's `convert("L")`).
    pub(super) fn grays(&self) -> Vec<u8> {
        match self.channels {
            3 => self
                .pixels
                .chunks_exact(3)
                .map(|p| {
                    ((u32::from(p[0]) * 19595
                        + u32::from(p[1]) * 38470
                        + u32::from(p[2]) * 7471
                        + 0x8000)
                        >> 16) as u8
                })
                .collect(),
            _ => self.pixels.clone(),
        }
    }

    /// The mean gray level rounded as `ImageEnhance.Contrast` takes it (`int(mean + 0.5)`).
    pub(super) fn mean_gray(&self) -> u8 {
        let grays = self.grays();
        let sum: f64 = grays.iter().map(|&g| f64::from(g)).sum();
        (sum / grays.len().max(1) as f64 + 0.5).floor() as u8
    }
}

/// Pillow's `rgb2hsv_row`: C's float variables and double arithmetic kept as they are.
fn rgb_to_hsv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    if max == min {
        return [0, 0, max];
    }
    let range = f32::from(max - min);
    let saturation = range / f32::from(max);
    let part = |c: u8| f32::from(max - c) / range;
    let (rc, gc, bc) = (part(r), part(g), part(b));
    let hue: f32 = if r == max {
        bc - gc
    } else if g == max {
        (2.0 + f64::from(rc) - f64::from(bc)) as f32
    } else {
        (4.0 + f64::from(gc) - f64::from(rc)) as f32
    };
    let hue = ((f64::from(hue) / 6.0 + 1.0) % 1.0) as f32;
    let byte = |x: f32| ((f64::from(x) * 255.0) as i32).clamp(0, 255) as u8;
    [byte(hue), byte(saturation), max]
}

/// Pillow's `hsv2rgb`.
fn hsv_to_rgb([h, s, v]: [u8; 3]) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let sector = (f64::from(h) * 6.0 / 255.0).floor() as i32;
    let f = (f64::from(h) * 6.0 / 255.0 - f64::from(sector)) as f32;
    let fs = (f64::from(s) / 255.0) as f32;
    let (fs, f, value) = (f64::from(fs), f64::from(f), f64::from(v));
    let byte = |x: f64| (x.round() as i32).clamp(0, 255) as u8;
    let p = byte(value * (1.0 - fs));
    let q = byte(value * (1.0 - fs * f));
    let t = byte(value * (1.0 - fs * (1.0 - f)));
    match sector % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn jitter(brightness: f64, contrast: f64, saturation: f64, hue: f64) -> Jitter {
        Jitter {
            brightness,
            contrast,
            saturation,
            hue,
        }
    }

    #[test]
    fn colour_jitter_is_off_at_zero_and_keeps_grays_gray() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut picture = Picture {
            width: 3,
            height: 1,
            channels: 3,
            pixels: vec![10, 200, 30, 250, 0, 90, 60, 60, 61],
        };
        let before = picture.clone();
        picture.jitter_colour(jitter(0.0, 0.0, 0.0, 0.0), &mut rng);
        assert_eq!(picture, before);
        let mut gray = Picture {
            width: 2,
            height: 1,
            channels: 3,
            pixels: vec![100, 100, 100, 200, 200, 200],
        };
        gray.jitter_colour(jitter(0.0, 0.0, 0.9, 0.5), &mut rng);
        assert_eq!(gray.pixels, [100, 100, 100, 200, 200, 200]);
        gray.jitter_colour(jitter(0.5, 0.5, 0.0, 0.0), &mut rng);
        assert!(gray.pixels.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        assert_ne!(gray.pixels, [100, 100, 100, 200, 200, 200]);
    }

    /// Pixels and shifts with the bytes Pillow 13 gives for
    /// `Image.merge("HSV", (h + np.int32(shift * 255).astype(np.uint8), s, v)).convert("RGB")`
    /// of `image.convert("HSV")`, as torchvision's `adjust_hue` computes it. (Checked once on
    /// all 2^24 colours at shifts 0.1, −0.23 and 0.5: every byte equal.)
    #[test]
    fn hue_shifts_give_pillows_bytes() {
        for (rgb, shift, pillow) in HUE_CASES {
            let mut picture = Picture {
                width: 1,
                height: 1,
                channels: 3,
                pixels: rgb.to_vec(),
            };
            picture.shift_hue(shift);
            assert_eq!(picture.pixels, pillow, "{rgb:?} shifted by {shift}");
        }
    }

    const HUE_CASES: [([u8; 3], f64, [u8; 3]); 12] = [
        ([239, 12, 153], 0.019, [239, 12, 135]),
        ([129, 167, 67], -0.371, [167, 67, 149]),
        ([238, 5, 106], -0.12, [202, 6, 238]),
        ([100, 159, 6], -0.262, [159, 6, 31]),
        ([34, 201, 30], 0.483, [179, 31, 201]),
        ([158, 31, 220], 0.131, [220, 31, 138]),
        ([94, 47, 22], -0.079, [94, 22, 31]),
        ([215, 125, 7], 0.452, [8, 159, 215]),
        ([119, 241, 97], -0.007, [124, 241, 97]),
        ([82, 96, 69], 0.261, [69, 94, 96]),
        ([185, 248, 69], 0.114, [69, 248, 73]),
        ([155, 133, 59], -0.232, [155, 60, 118]),
    ];
}
