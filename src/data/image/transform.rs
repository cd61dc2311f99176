//! How an image of any size becomes a model input of one size, as timm and torchvision do it
//! on Pillow images: resized by its shorter side to `size / crop_pct` (once, when a dataset is
//! read: the cache), then centre-cropped for evaluation, or for training cropped at random,
//! resized to `size` and flipped with draws from the sample's own random stream.
//!
//! Resampling is Pillow's (`resample.rs`), so the bytes are the ones timm feeds its models;
//! rounding follows torchvision's (`Resize` truncates the longer side, `CenterCrop` rounds
//! half to even, as Python's `round` does).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::resample;
use crate::config::{ColorMode, Interpolation};
use crate::data::ImageShape;

/// An image as decoded: row-major pixels of interleaved channels (1 or 3).
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// A rectangle of a picture, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
}

/// The evaluation geometry of images kept at their own aspect, saved with the model so that
/// predict and serve see what evaluation saw: the shorter side resized to
/// `max(height, width) / crop_pct`, then the input's size cut from the centre.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resize {
    pub crop_pct: f64,
    pub interpolation: Interpolation,
}

impl Resize {
    /// The shorter side images are cached at for inputs of `input` (timm's `scale_size`).
    pub fn shorter_side(&self, input: ImageShape) -> usize {
        (input.height.max(input.width) as f64 / self.crop_pct).floor() as usize
    }

    /// An image as the model's input under this geometry: channel-major bytes of `input`.
    pub fn evaluate(&self, image: &image::DynamicImage, input: ImageShape) -> Vec<u8> {
        let cached = self.cache(image, input);
        let region = cached.centre(input.width, input.height);
        cached.crop(region).planes()
    }

    /// What a dataset keeps of `image` for inputs of `input`: its shorter side resized.
    pub fn cache(&self, image: &image::DynamicImage, input: ImageShape) -> Picture {
        let color = match input.channels {
            1 => ColorMode::Grayscale,
            _ => ColorMode::Rgb,
        };
        Picture::from_image(image, color)
            .resized_shorter(self.shorter_side(input), self.interpolation)
    }
}

impl Picture {
    /// `image` in `color`, converted as Pillow's `convert("RGB")` does (alpha dropped, gray
    /// repeated).
    pub fn from_image(image: &image::DynamicImage, color: ColorMode) -> Self {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let (channels, pixels) = match color {
            ColorMode::Grayscale => (1, image.to_luma8().into_raw()),
            ColorMode::Rgb => (3, image.to_rgb8().into_raw()),
        };
        Self {
            width,
            height,
            channels,
            pixels,
        }
    }

    /// Resized so that its shorter side is `shorter`, the longer one in proportion
    /// (truncated, as torchvision's `Resize(int)`).
    pub fn resized_shorter(&self, shorter: usize, interpolation: Interpolation) -> Picture {
        let (short, long) = (self.width.min(self.height), self.width.max(self.height));
        let long_out = (shorter as f64 * long as f64 / short as f64) as usize;
        let (width, height) = match self.width <= self.height {
            true => (shorter, long_out),
            false => (long_out, shorter),
        };
        self.resized(self.whole(), width, height, interpolation)
    }

    pub fn whole(&self) -> Region {
        Region {
            left: 0,
            top: 0,
            width: self.width,
            height: self.height,
        }
    }

    /// The `width × height` region at the centre, placed as torchvision's `CenterCrop`.
    /// A picture smaller than the region is not padded: callers cache pictures large enough.
    pub fn centre(&self, width: usize, height: usize) -> Region {
        Region {
            left: half_rounded_even(self.width.saturating_sub(width)),
            top: half_rounded_even(self.height.saturating_sub(height)),
            width: width.min(self.width),
            height: height.min(self.height),
        }
    }

    /// The pixels of `region`, unchanged.
    pub fn crop(&self, region: Region) -> Picture {
        let row = self.width * self.channels;
        let mut pixels = Vec::with_capacity(region.width * region.height * self.channels);
        for y in region.top..region.top + region.height {
            let start = y * row + region.left * self.channels;
            pixels.extend_from_slice(&self.pixels[start..start + region.width * self.channels]);
        }
        Picture {
            width: region.width,
            height: region.height,
            channels: self.channels,
            pixels,
        }
    }

    /// `region` cut out and resampled to `width × height` (torchvision's `resized_crop`).
    pub fn resized(
        &self,
        region: Region,
        width: usize,
        height: usize,
        interpolation: Interpolation,
    ) -> Picture {
        let crop = self.crop(region);
        if region.width == width && region.height == height {
            return crop;
        }
        Picture {
            width,
            height,
            channels: self.channels,
            pixels: resample::resize(
                &crop.pixels,
                (crop.width, crop.height),
                self.channels,
                (width, height),
                interpolation,
            ),
        }
    }

    pub fn flip_horizontal(&mut self) {
        let row = self.width * self.channels;
        for line in self.pixels.chunks_exact_mut(row) {
            for x in 0..self.width / 2 {
                let (a, b) = (x * self.channels, (self.width - 1 - x) * self.channels);
                for c in 0..self.channels {
                    line.swap(a + c, b + c);
                }
            }
        }
    }

    /// Channel-major bytes (`channels × height × width`), as models take images.
    pub fn planes(&self) -> Vec<u8> {
        let plane = self.width * self.height;
        let mut planes = vec![0u8; self.pixels.len()];
        for (i, pixel) in self.pixels.chunks_exact(self.channels).enumerate() {
            for (c, &value) in pixel.iter().enumerate() {
                planes[c * plane + i] = value;
            }
        }
        planes
    }
}

/// `n / 2` rounded half to even, as Python's `round(n / 2.0)`.
fn half_rounded_even(n: usize) -> usize {
    let half = n / 2;
    match n % 2 == 1 && half % 2 == 1 {
        true => half + 1,
        false => half,
    }
}

/// torchvision's `RandomResizedCrop.get_params`: a region covering a share of the area drawn
/// from `scale` with an aspect ratio drawn log-uniformly from `ratio`, placed uniformly; after
/// ten misses, the centre region of the nearest allowed ratio.
pub fn random_resized_region(
    width: usize,
    height: usize,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut impl Rng,
) -> Region {
    let area = (width * height) as f64;
    let log_ratio = [ratio[0].ln(), ratio[1].ln()];
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale);
        let aspect = uniform(rng, log_ratio).exp();
        let w = (target_area * aspect).sqrt().round() as usize;
        let h = (target_area / aspect).sqrt().round() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            return Region {
                top: rng.random_range(0..=height - h),
                left: rng.random_range(0..=width - w),
                width: w,
                height: h,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio[0] {
        (width, ((width as f64 / ratio[0]).round() as usize).max(1))
    } else if in_ratio > ratio[1] {
        (((height as f64 * ratio[1]).round() as usize).max(1), height)
    } else {
        (width, height)
    };
    Region {
        left: (width - w) / 2,
        top: (height - h) / 2,
        width: w,
        height: h,
    }
}

pub(super) fn uniform(rng: &mut impl Rng, [low, high]: [f64; 2]) -> f64 {
    low + (high - low) * rng.random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn gradient(width: usize, height: usize) -> Picture {
        let pixels = (0..height)
            .flat_map(|y| (0..width).flat_map(move |x| [x as u8, y as u8, (x + y) as u8]))
            .collect();
        Picture {
            width,
            height,
            channels: 3,
            pixels,
        }
    }

    #[test]
    fn centre_crops_round_half_to_even_as_torchvision() {
        let picture = gradient(9, 8);
        // (9 - 4) / 2 = 2.5 → 2; (8 - 5) / 2 = 1.5 → 2.
        assert_eq!(
            picture.centre(4, 5),
            Region {
                left: 2,
                top: 2,
                width: 4,
                height: 5
            }
        );
        assert_eq!(half_rounded_even(7), 4);
        assert_eq!(half_rounded_even(6), 3);
    }

    #[test]
    fn shorter_side_resizes_keep_the_aspect() {
        let resized = gradient(40, 30).resized_shorter(15, Interpolation::Bilinear);
        assert_eq!((resized.width, resized.height), (20, 15));
        let resize = Resize {
            crop_pct: 0.875,
            interpolation: Interpolation::Bicubic,
        };
        let input = ImageShape {
            channels: 3,
            height: 224,
            width: 224,
        };
        assert_eq!(resize.shorter_side(input), 256);
    }

    #[test]
    fn crops_flips_and_planes() {
        let mut picture = gradient(3, 2).crop(Region {
            left: 1,
            top: 1,
            width: 2,
            height: 1,
        });
        assert_eq!(picture.pixels, [1, 1, 2, 2, 1, 3]);
        picture.flip_horizontal();
        assert_eq!(picture.pixels, [2, 1, 3, 1, 1, 2]);
        assert_eq!(picture.planes(), [2, 1, 1, 1, 3, 2]);
    }

    #[test]
    fn random_regions_fit_and_follow_their_stream() {
        let draw = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            random_resized_region(300, 200, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut rng)
        };
        for seed in 0..200 {
            let region = draw(seed);
            assert!(region.left + region.width <= 300 && region.top + region.height <= 200);
            assert!(region.width > 0 && region.height > 0);
            assert_eq!(region, draw(seed));
        }
        assert_ne!(draw(1), draw(2));
    }
}
