//! Photos of any size kept at their own aspect: image folders with `data.image.crop_pct` or
//! `[data.augment]` (which alone means a `crop_pct` of 1).
//! Each image is decoded once into memory with its shorter side resized for the input size
//! (`transform::Resize::cache`, FFCV's choice: a little above the training size), then per
//! batch centre-cropped for evaluation or, in training with `[data.augment]`, cropped at
//! random, resized and flipped with the draws of the sample's own (seed, epoch, index)
//! stream, so that a resumed run and any number of workers see the same pixels.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::Rng;

use super::colour::Jitter;
use super::mix::mix_batch;
use super::transform::{Picture, Resize, random_resized_region};
use super::{Normalization, folder, push_normalized};
use crate::config::{AugmentConfig, DataConfig, ImageDataConfig};
use crate::data::{
    AnyBatch, BatchContext, DataError, DataSpec, Dataset, DeviceBatch, Example, HostBatch,
    ImageShape, Skipped, Split, Splits, TEST_SPLIT_SALT, split_off,
};

/// Decoded photos at their cached size, with labels and files.
pub struct PhotoSet {
    pub pictures: Vec<Picture>,
    pub labels: Vec<u16>,
    pub paths: Vec<PathBuf>,
}

/// Reads an image folder of photos into train, validation and test splits.
pub fn load(config: &DataConfig, image: &ImageDataConfig, seed: u64) -> Result<Splits, DataError> {
    let resize = Resize {
        crop_pct: image.crop_pct.unwrap_or(1.0),
        interpolation: image.interpolation,
    };
    let [height, width] = image.size;
    let input = ImageShape {
        channels: image.color.channels(),
        height,
        width,
    };
    let listing = folder::list(config, seed)?;
    let mut skipped = Skipped::default();
    let mut read = |files: &[(PathBuf, u16)]| -> Result<Arc<PhotoSet>, DataError> {
        let (pictures, labels, paths) = folder::decode_all(files, config, &mut skipped, |path| {
            let decoded = folder::open(path)?;
            too_small(path, &decoded, resize.shorter_side(input), image)?;
            Ok(resize.cache(&decoded, input))
        })?;
        Ok(Arc::new(PhotoSet {
            pictures,
            labels,
            paths,
        }))
    };
    let pool = read(&listing.train)?;
    let all: Vec<u32> = (0..pool.labels.len() as u32).collect();
    let (test, pool_indices, test_indices) = match listing.test.as_deref().map(&mut read) {
        Some(test) => {
            let test = test?;
            let indices = (0..test.labels.len() as u32).collect();
            (test, all, indices)
        }
        None => {
            let (kept, held) = split_off(all, config.test_fraction, seed ^ TEST_SPLIT_SALT);
            (pool.clone(), kept, held)
        }
    };
    let (train_indices, valid_indices) = split_off(pool_indices, config.valid_fraction, seed);
    if train_indices.is_empty() {
        return Err(DataError::Empty {
            path: config.path.clone(),
            what: "images for the training split".into(),
        });
    }
    let normalization = match image.mean.is_empty() {
        true => measure_normalization(&pool, &train_indices, input.channels),
        false => Normalization {
            mean: image.mean.clone(),
            std: image.std.clone(),
        },
    };
    let photos = |set: Arc<PhotoSet>| -> Arc<dyn Dataset> {
        Arc::new(Photos {
            set,
            input,
            resize,
            normalization: normalization.clone(),
            augment: config.augment.clone(),
        })
    };
    let test_is_pool = Arc::ptr_eq(&test, &pool);
    let pool_data = photos(pool);
    let test_data = match test_is_pool {
        true => pool_data.clone(),
        false => photos(test),
    };
    Ok(Splits {
        train: Split::new(pool_data.clone(), train_indices),
        valid: Split::new(pool_data, valid_indices),
        test: Split::new(test_data, test_indices),
        spec: DataSpec::ImageClassification {
            input,
            classes: listing.classes,
            normalization,
            resize: Some(resize),
        },
        tokenizer: None,
        skipped,
        unseen_categories: Default::default(),
    })
}

/// Refuses an image whose shorter side would have to grow more than `data.image.max_upscale`
/// times to reach the cached side `shorter`.
fn too_small(
    path: &Path,
    decoded: &image::DynamicImage,
    shorter: usize,
    image: &ImageDataConfig,
) -> Result<(), DataError> {
    let (width, height) = (decoded.width(), decoded.height());
    let side = width.min(height);
    let upscale = shorter as f64 / f64::from(side.max(1));
    match side == 0 || upscale > image.max_upscale {
        true => Err(DataError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "{width}×{height} pixels is too small for crops of {}×{}: its shorter side would be enlarged {upscale:.1}× to {shorter} (data.image.max_upscale = {}; set data.on_error = \"skip\" to leave such images out)",
                image.size[0], image.size[1], image.max_upscale
            ),
        }),
        false => Ok(()),
    }
}

/// Photos batched as model inputs: centre crops, or augmented crops for training batches.
struct Photos {
    set: Arc<PhotoSet>,
    input: ImageShape,
    resize: Resize,
    normalization: Normalization,
    augment: Option<AugmentConfig>,
}

impl Photos {
    /// Sample `index` as the model sees it: channel-major bytes of the input's shape,
    /// augmented for a training batch (`context` with an epoch) when `[data.augment]` is set.
    fn input_bytes(&self, index: u32, context: Option<&BatchContext>) -> Vec<u8> {
        let picture = &self.set.pictures[index as usize];
        let (width, height) = (self.input.width, self.input.height);
        let training = context.filter(|context| context.epoch.is_some());
        match (&self.augment, training) {
            (Some(augment), Some(context)) => {
                let mut rng = context.rng(index);
                let region = random_resized_region(
                    picture.width,
                    picture.height,
                    augment.crop_scale,
                    augment.crop_ratio,
                    &mut rng,
                );
                let mut crop = picture.resized(region, width, height, self.resize.interpolation);
                if rng.random::<f64>() < augment.hflip {
                    crop.flip_horizontal();
                }
                let jitter = Jitter {
                    brightness: augment.brightness,
                    contrast: augment.contrast,
                    saturation: augment.saturation,
                    hue: augment.hue,
                };
                if !jitter.is_off() {
                    crop.jitter_colour(jitter, &mut rng);
                }
                if let Some(policy) = augment.auto_augment_policy() {
                    crop.auto_augment(policy, &mut rng);
                }
                crop.planes()
            }
            _ => picture.crop(picture.centre(width, height)).planes(),
        }
    }

    fn host(&self, indices: &[u32], context: Option<&BatchContext>) -> HostBatch {
        let plane = self.input.height * self.input.width;
        let mut pixels = Vec::with_capacity(indices.len() * self.input.len());
        for &index in indices {
            let bytes = self.input_bytes(index, context);
            push_normalized(&mut pixels, &bytes, plane, &self.normalization);
        }
        let shape = [
            indices.len(),
            self.input.channels,
            self.input.height,
            self.input.width,
        ];
        let labels: Vec<i64> = indices
            .iter()
            .map(|&i| i64::from(self.set.labels[i as usize]))
            .collect();
        let training = context.filter(|context| context.epoch.is_some());
        let mixed = match (&self.augment, training) {
            (Some(augment), Some(context)) => mix_batch(
                &mut pixels,
                shape,
                &labels,
                augment,
                &mut context.batch_rng(indices),
            ),
            _ => None,
        };
        HostBatch::Images {
            pixels,
            shape,
            labels,
            mixed,
        }
    }
}

impl Dataset for Photos {
    fn len(&self) -> usize {
        self.set.labels.len()
    }

    fn batch(&self, indices: &[u32], context: &BatchContext) -> AnyBatch {
        let host = self.host(indices, Some(context));
        AnyBatch::new(DeviceBatch::new(host, &context.device))
    }

    fn resident_bytes(&self) -> usize {
        let pixels: usize = self.set.pictures.iter().map(|p| p.pixels.len()).sum();
        pixels + self.set.labels.len() * 2
    }

    fn sample_bytes(&self) -> usize {
        self.input.len() * 4 + 8
    }

    fn example(&self, index: u32) -> Option<Example> {
        Some(Example {
            file: self.set.paths.get(index as usize).cloned(),
            line: None,
            image: Some((self.input, self.input_bytes(index, None))),
        })
    }

    fn host_batch(&self, indices: &[u32]) -> Option<HostBatch> {
        Some(self.host(indices, None))
    }
}

/// Per-channel mean and standard deviation of the cached training photos, scaled to [0, 1].
fn measure_normalization(set: &PhotoSet, indices: &[u32], channels: usize) -> Normalization {
    let mut sum = vec![0f64; channels];
    let mut sum_sq = vec![0f64; channels];
    let mut count = 0f64;
    for &index in indices {
        let picture = &set.pictures[index as usize];
        for pixel in picture.pixels.chunks_exact(channels) {
            for (c, &value) in pixel.iter().enumerate() {
                let value = f64::from(value) / 255.0;
                sum[c] += value;
                sum_sq[c] += value * value;
            }
        }
        count += (picture.width * picture.height) as f64;
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    Normalization {
        std: sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| ((sq / count - m * m).max(0.0).sqrt().max(1e-6)) as f32)
            .collect(),
        mean: mean.into_iter().map(|m| m as f32).collect(),
    }
}
