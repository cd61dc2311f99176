//! Photos of any size kept at their own aspect: image folders or Parquet files of encoded
//! images with `data.image.crop_pct` or `[data.augment]` (which alone means a `crop_pct` of 1).
//! Each image is decoded once into the cache (`cache.rs`: memory, or disk beyond the memory
//! budget) with its shorter side resized for the input size (`transform::Resize::cache`,
//! FFCV's choice: a little above the training size), then per
//! batch centre-cropped for evaluation or, in training with `[data.augment]`, cropped at
//! random, resized and flipped with the draws of the sample's own (seed, epoch, index)
//! stream, so that a resumed run and any number of workers see the same pixels.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::Rng;

use super::cache::PictureCache;
use super::colour::Jitter;
use super::mix::mix_batch;
use super::transform::{Picture, Resize, random_resized_region};
use super::{Normalization, folder, push_normalized};
use crate::config::{AugmentConfig, DataConfig, DatasetKind, ImageDataConfig};
use crate::data::{
    AnyBatch, BatchContext, DataError, DataSpec, Dataset, DeviceBatch, Example, HostBatch,
    ImageShape, Skipped, Split, Splits, TEST_SPLIT_SALT, classes_of, split_off,
};

/// Decoded photos at their cached size, with labels and where each came from (a file, or a
/// row of a Parquet file).
pub struct PhotoSet {
    pub pictures: PictureCache,
    pub labels: Vec<u16>,
    pub origins: Vec<(PathBuf, Option<usize>)>,
}

impl PhotoSet {
    fn new(channels: usize, budget: Option<u64>) -> Self {
        Self {
            pictures: PictureCache::new(channels, budget),
            labels: Vec::new(),
            origins: Vec::new(),
        }
    }

    fn push(
        &mut self,
        picture: Picture,
        label: u16,
        origin: (PathBuf, Option<usize>),
    ) -> Result<(), DataError> {
        self.pictures.push(picture)?;
        self.labels.push(label);
        self.origins.push(origin);
        Ok(())
    }
}

/// Photos decoded at a time before they go into the cache (bounding what is held at once).
const DECODE_BATCH: usize = 256;

/// Reads an image folder or Parquet files of photos into train, validation and test splits.
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
    let budget = config
        .memory_budget
        .as_deref()
        .and_then(|text| crate::config::parse_bytes(text).ok());
    let mut skipped = Skipped::default();
    let cache = |decoded: &image::DynamicImage| -> Result<Picture, String> {
        too_small(decoded, resize.shorter_side(input), image)?;
        Ok(resize.cache(decoded, input))
    };
    let (pool, test, classes) = match config.dataset {
        DatasetKind::ImageParquet => {
            let (train_file, test_file) = super::parquet::files(&config.path)?;
            let train_rows = read_rows(&train_file, config)?;
            let classes = classes_of(
                train_rows
                    .iter()
                    .filter_map(|row| row.value.as_ref().ok())
                    .map(|(_, label)| label.as_str()),
            );
            let mut read = |file: &Path, rows: Vec<ParquetRow>| {
                photos_from_rows(
                    file,
                    rows,
                    &classes,
                    PhotoSet::new(input.channels, budget),
                    config,
                    &mut skipped,
                    &cache,
                )
            };
            let pool = read(&train_file, train_rows)?;
            let test = match test_file {
                Some(file) => Some(read(&file, read_rows(&file, config)?)?),
                None => None,
            };
            (pool, test, classes)
        }
        _ => {
            let listing = folder::list(config, seed)?;
            let mut read = |files: &[(PathBuf, u16)]| {
                photos_from_files(
                    files,
                    PhotoSet::new(input.channels, budget),
                    config,
                    &mut skipped,
                    &cache,
                )
            };
            let pool = read(&listing.train)?;
            let test = listing.test.as_deref().map(&mut read).transpose()?;
            (pool, test, listing.classes)
        }
    };
    for set in std::iter::once(&pool).chain(test.as_ref()) {
        if set.pictures.on_disk() {
            eprintln!(
                "data: {} photos are over three quarters of data.memory_budget; cached on disk in {} (read back through the page cache)",
                set.labels.len(),
                std::env::temp_dir().display()
            );
        }
    }
    let pool = Arc::new(pool);
    let all: Vec<u32> = (0..pool.labels.len() as u32).collect();
    let (test, pool_indices, test_indices) = match test.map(Arc::new) {
        Some(test) => {
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
            classes,
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
    decoded: &image::DynamicImage,
    shorter: usize,
    image: &ImageDataConfig,
) -> Result<(), String> {
    let (width, height) = (decoded.width(), decoded.height());
    let side = width.min(height);
    let upscale = shorter as f64 / f64::from(side.max(1));
    match side == 0 || upscale > image.max_upscale {
        true => Err(format!(
            "{width}×{height} pixels is too small for crops of {}×{}: its shorter side would be enlarged {upscale:.1}× to {shorter} (data.image.max_upscale = {}; set data.on_error = \"skip\" to leave such images out)",
            image.size[0], image.size[1], image.max_upscale
        )),
        false => Ok(()),
    }
}

type ParquetRow = crate::data::parquet::Row<Vec<u8>>;

fn read_rows(file: &Path, config: &DataConfig) -> Result<Vec<ParquetRow>, DataError> {
    crate::data::parquet::read::<Vec<u8>>(
        file,
        &super::parquet::IMAGE_COLUMNS,
        super::parquet::LABEL_COLUMN,
        config.limit,
    )
}

/// Decodes image files into the cache, `DECODE_BATCH` at a time on `data.workers` threads.
fn photos_from_files(
    files: &[(PathBuf, u16)],
    mut set: PhotoSet,
    config: &DataConfig,
    skipped: &mut Skipped,
    cache: &(impl Fn(&image::DynamicImage) -> Result<Picture, String> + Sync),
) -> Result<PhotoSet, DataError> {
    for part in files.chunks(DECODE_BATCH) {
        let (pictures, labels, paths) = folder::decode_all(part, config, skipped, |path| {
            let decoded = folder::open(path)?;
            cache(&decoded).map_err(|detail| DataError::Corrupt {
                path: path.to_path_buf(),
                detail,
            })
        })?;
        for ((picture, label), path) in pictures.into_iter().zip(labels).zip(paths) {
            set.push(picture, label, (path, None))?;
        }
    }
    Ok(set)
}

/// Decodes the encoded images of Parquet rows into the cache, as `photos_from_files` does;
/// a row that does not decode, is too small or has a class the training rows lack stops the
/// load or is counted, with its row number.
fn photos_from_rows(
    file: &Path,
    rows: Vec<ParquetRow>,
    classes: &[String],
    mut set: PhotoSet,
    config: &DataConfig,
    skipped: &mut Skipped,
    cache: &(impl Fn(&image::DynamicImage) -> Result<Picture, String> + Sync),
) -> Result<PhotoSet, DataError> {
    for part in rows.chunks(DECODE_BATCH) {
        let decoded = folder::parallel_map(part, config.workers, |row| {
            let (bytes, label) = row.value.as_ref().map_err(Clone::clone)?;
            let class = classes
                .iter()
                .position(|class| class == label)
                .ok_or_else(|| format!("label \"{label}\" does not occur in the training data"))?;
            let picture = folder::open_bytes(bytes).and_then(|decoded| cache(&decoded))?;
            Ok::<_, String>((picture, class as u16))
        });
        for (row, result) in part.iter().zip(decoded) {
            match result {
                Ok((picture, label)) => {
                    set.push(picture, label, (file.to_path_buf(), Some(row.row)))?;
                }
                Err(detail) => skipped.bad_record(config.on_error, file, row.row, detail)?,
            }
        }
    }
    Ok(set)
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
        let picture = self.set.pictures.get(index as usize);
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
        self.set.pictures.resident_bytes() + self.set.labels.len() * 2
    }

    fn sample_bytes(&self) -> usize {
        self.input.len() * 4 + 8
    }

    fn example(&self, index: u32) -> Option<Example> {
        Some(Example {
            file: self
                .set
                .origins
                .get(index as usize)
                .map(|(file, _)| file.clone()),
            line: self
                .set
                .origins
                .get(index as usize)
                .and_then(|(_, row)| *row),
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
        let picture = set.pictures.get(index as usize);
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
