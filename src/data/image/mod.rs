//! Labelled image sets held in memory as bytes: MNIST-style IDX files and image folders.

mod auto_augment;
mod cache;
mod colour;
mod folder;
pub(crate) mod idx;
mod jpeg;
mod mix;
mod parquet;
mod photos;
mod pillow_ops;
mod resample;
pub mod transform;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    DataError, DataSpec, Dataset, Example, HostBatch, Samples, Skipped, Split, Splits,
    TEST_SPLIT_SALT, split_off,
};
use crate::config::{ColorMode, DataConfig, DatasetKind, ImageDataConfig};
use crate::data::ImageShape;
pub use transform::Resize;

/// Images as channel-major bytes (`len × channels × height × width`) with their labels.
#[derive(Clone)]
pub struct ImageSet {
    pub shape: ImageShape,
    pub pixels: Vec<u8>,
    pub labels: Vec<u16>,
    pub origins: Origins,
}

/// Where each image of a set was read from, so that reports can point at it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Origins {
    #[default]
    Unknown,
    /// One file per image, in the set's order.
    Files(Vec<PathBuf>),
    /// Image `i` is record `i + 1` of one file (IDX).
    Records(PathBuf),
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, index: usize) -> &[u8] {
        let size = self.shape.len();
        &self.pixels[index * size..(index + 1) * size]
    }
}

/// Per-channel mean and standard deviation of pixel values scaled to [0, 1].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// `set` batched into `f32` normalised as `normalization` says: how training, evaluation and
/// prediction all see images.
pub fn normalized(set: Arc<ImageSet>, normalization: &Normalization) -> Arc<dyn Dataset> {
    Arc::new(NormalizedImages {
        set,
        normalization: normalization.clone(),
    })
}

/// Reads one image file as channel-major bytes of `shape`, as the model's evaluation saw its
/// images: squashed to `shape` as image folders are, or with `resize` (photos kept at their
/// aspect) resized by the shorter side and centre-cropped.
pub fn read_image(
    path: &Path,
    shape: ImageShape,
    resize: Option<&Resize>,
) -> Result<Vec<u8>, DataError> {
    Ok(as_input(&folder::open(path)?, shape, resize))
}

/// [`read_image`] for an encoded image (PNG, JPEG) already in memory, such as an upload.
pub fn decode_image(
    bytes: &[u8],
    shape: ImageShape,
    resize: Option<&Resize>,
) -> Result<Vec<u8>, String> {
    Ok(as_input(&folder::open_bytes(bytes)?, shape, resize))
}

/// An encoded image (PNG, JPEG) decoded at its own size: RGB or gray, as Pillow decodes it
/// (a JPEG byte for byte), or why it cannot be (a damaged or truncated file is refused where
/// Pillow refuses it).
pub fn decode_pixels(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    folder::open_bytes(bytes)
}

fn as_input(image: &image::DynamicImage, shape: ImageShape, resize: Option<&Resize>) -> Vec<u8> {
    match resize {
        Some(resize) => resize.evaluate(image, shape),
        None => folder::resize(image, shape, color_of(shape)),
    }
}

fn color_of(shape: ImageShape) -> ColorMode {
    if shape.channels == 3 {
        ColorMode::Rgb
    } else {
        ColorMode::Grayscale
    }
}

/// Appends channel-major `image` to `pixels`, each channel's bytes normalised as
/// `(byte / 255 − mean) / std`.
pub(crate) fn push_normalized(
    pixels: &mut Vec<f32>,
    image: &[u8],
    plane: usize,
    normalization: &Normalization,
) {
    let channels = image.chunks_exact(plane);
    for ((channel, &mean), &std) in channels.zip(&normalization.mean).zip(&normalization.std) {
        push_channel(pixels, channel, mean, std);
    }
}

/// One channel of [`push_normalized`], vectorised. Each value is computed by the same IEEE
/// operations in the same order on every CPU (no fused multiply-add), so batches are
/// bit-identical everywhere.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn push_channel(pixels: &mut Vec<f32>, channel: &[u8], mean: f32, std: f32) {
    pixels.extend(
        channel
            .iter()
            .map(|&byte| (byte as f32 / 255.0 - mean) / std),
    );
}

/// An image set batched into normalised `f32`.
struct NormalizedImages {
    set: Arc<ImageSet>,
    normalization: Normalization,
}

impl Samples for NormalizedImages {
    fn len(&self) -> usize {
        self.set.len()
    }

    fn batch(&self, indices: &[u32]) -> HostBatch {
        let shape = self.set.shape;
        let plane = shape.height * shape.width;
        let mut pixels = Vec::with_capacity(indices.len() * shape.len());
        for &index in indices {
            push_normalized(
                &mut pixels,
                self.set.image(index as usize),
                plane,
                &self.normalization,
            );
        }
        HostBatch::Images {
            pixels,
            shape: [indices.len(), shape.channels, shape.height, shape.width],
            labels: indices
                .iter()
                .map(|&i| i64::from(self.set.labels[i as usize]))
                .collect(),
            mixed: None,
        }
    }

    fn resident_bytes(&self) -> usize {
        self.set.pixels.len() + self.set.labels.len() * 2
    }

    fn sample_bytes(&self) -> usize {
        self.set.shape.len() * 4 + 8
    }

    fn example(&self, index: u32) -> Option<Example> {
        let index = index as usize;
        let (file, line) = match &self.set.origins {
            Origins::Unknown => (None, None),
            Origins::Files(paths) => (paths.get(index).cloned(), None),
            Origins::Records(path) => (Some(path.clone()), Some(index + 1)),
        };
        Some(Example {
            file,
            line,
            image: Some((self.set.shape, self.set.image(index).to_vec())),
        })
    }
}

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// A labelled image set as read: the training pool, the test set if the dataset has its own,
/// and the class names.
pub(crate) struct ImageSets {
    pub train: ImageSet,
    pub test: Option<ImageSet>,
    pub classes: Vec<String>,
    /// Records passed over under `data.on_error = "skip"`.
    pub skipped: Skipped,
}

/// Reads the in-memory image dataset `config` names.
pub(crate) fn read_sets(
    config: &DataConfig,
    image: &ImageDataConfig,
    seed: u64,
) -> Result<ImageSets, DataError> {
    match config.dataset {
        DatasetKind::ImageFolder => folder::load(config, image, seed),
        DatasetKind::ImageParquet => parquet::load(config, image),
        _ => {
            let (train, test) = load_idx_pair(config)?;
            let classes = match config.dataset {
                DatasetKind::FashionMnist => FASHION_CLASSES
                    .iter()
                    .map(|name| name.to_string())
                    .collect(),
                _ => (0..10).map(|digit| digit.to_string()).collect(),
            };
            Ok(ImageSets {
                train,
                test: Some(test),
                classes,
                skipped: Skipped::default(),
            })
        }
    }
}

/// Loads the image dataset `config` names; the validation split is drawn from the training
/// pool with `seed`.
pub fn load(config: &DataConfig, seed: u64) -> Result<Splits, DataError> {
    let image = config.image.clone().unwrap_or_default();
    if image.crop_pct.is_some() || config.augment.is_some() {
        return photos::load(config, &image, seed);
    }
    let sets = read_sets(config, &image, seed)?;
    let classes = sets.classes;
    // The training pool and the test set, each with the indices that belong to it.
    let pool = Arc::new(sets.train);
    let all: Vec<u32> = (0..pool.len() as u32).collect();
    let (test, pool_indices, test_indices) = match sets.test {
        Some(test) => {
            let test_all = (0..test.len() as u32).collect();
            (Arc::new(test), all, test_all)
        }
        None => {
            let (kept, held) = split_off(all, config.test_fraction, seed ^ TEST_SPLIT_SALT);
            (pool.clone(), kept, held)
        }
    };
    for set in [&pool, &test] {
        if let Some(&label) = set
            .labels
            .iter()
            .find(|&&label| label as usize >= classes.len())
        {
            return Err(DataError::Corrupt {
                path: config.path.clone(),
                detail: format!(
                    "label {label} is out of range for {} classes",
                    classes.len()
                ),
            });
        }
    }
    let (train_indices, valid_indices) = split_off(pool_indices, config.valid_fraction, seed);
    if train_indices.is_empty() {
        return Err(DataError::Empty {
            path: config.path.clone(),
            what: "images for the training split".into(),
        });
    }
    let normalization = if image.mean.is_empty() {
        measure_normalization(&pool, &train_indices)
    } else {
        Normalization {
            mean: image.mean.clone(),
            std: image.std.clone(),
        }
    };
    let (pool_data, test_data) = (
        normalized(pool.clone(), &normalization),
        normalized(test, &normalization),
    );
    Ok(Splits {
        train: Split::new(pool_data.clone(), train_indices),
        valid: Split::new(pool_data, valid_indices),
        test: Split::new(test_data, test_indices),
        spec: DataSpec::ImageClassification {
            input: pool.shape,
            classes,
            normalization,
            resize: None,
        },
        tokenizer: None,
        skipped: sets.skipped,
        unseen_categories: Default::default(),
    })
}

fn load_idx_pair(config: &DataConfig) -> Result<(ImageSet, ImageSet), DataError> {
    let read_pair = |prefix: &str| -> Result<ImageSet, DataError> {
        let images_path = find_idx(config, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels_path = find_idx(config, &format!("{prefix}-labels-idx1-ubyte"))?;
        let images = idx::read(&images_path, 3, config.limit)?;
        let labels = idx::read(&labels_path, 1, config.limit)?;
        if images.dims[0] != labels.dims[0] {
            return Err(DataError::Corrupt {
                path: labels_path,
                detail: format!(
                    "holds {} labels for {} images in {}",
                    labels.dims[0],
                    images.dims[0],
                    images_path.display()
                ),
            });
        }
        Ok(ImageSet {
            shape: ImageShape {
                channels: 1,
                height: images.dims[1],
                width: images.dims[2],
            },
            pixels: images.bytes,
            labels: labels.bytes.into_iter().map(u16::from).collect(),
            origins: Origins::Records(images_path),
        })
    };
    Ok((read_pair("train")?, read_pair("t10k")?))
}

fn find_idx(config: &DataConfig, stem: &str) -> Result<std::path::PathBuf, DataError> {
    idx::find(&config.path, stem).ok_or_else(|| DataError::Missing {
        dataset: config.dataset.name().to_string(),
        path: config.path.clone(),
        detail: format!("{stem} (or {stem}.gz) is not there"),
        fetch: fetch_command(&config.dataset, &config.path),
    })
}

/// The command that downloads a dataset, for datasets `datasets/fetch` knows.
fn fetch_command(dataset: &DatasetKind, path: &Path) -> Option<String> {
    let default = Path::new("datasets").join(dataset.name());
    (path == default).then(|| format!("datasets/fetch {}", dataset.name()))
}

pub(crate) fn measure_normalization(set: &ImageSet, indices: &[u32]) -> Normalization {
    let shape = set.shape;
    let plane = shape.height * shape.width;
    let mut sum = vec![0f64; shape.channels];
    let mut sum_sq = vec![0f64; shape.channels];
    for &index in indices {
        let image = set.image(index as usize);
        for (channel, pixels) in image.chunks_exact(plane).enumerate() {
            let (s, sq) = pixels.iter().fold((0u64, 0u64), |(s, sq), &p| {
                (s + p as u64, sq + (p as u64) * (p as u64))
            });
            sum[channel] += s as f64;
            sum_sq[channel] += sq as f64;
        }
    }
    let count = (indices.len() * plane) as f64 * 255.0;
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let std = sum_sq
        .iter()
        .zip(&mean)
        .map(|(sq, m)| ((sq / (count * 255.0) - m * m).max(0.0).sqrt().max(1e-6)) as f32)
        .collect();
    Normalization {
        mean: mean.into_iter().map(|m| m as f32).collect(),
        std,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_set(n: usize) -> ImageSet {
        ImageSet {
            shape: ImageShape {
                channels: 1,
                height: 1,
                width: 2,
            },
            pixels: (0..n).flat_map(|_| [0u8, 255]).collect(),
            labels: (0..n).map(|i| (i % 3) as u16).collect(),
            origins: Origins::Unknown,
        }
    }

    #[test]
    fn normalization_of_half_black_half_white() {
        let norm = measure_normalization(&tiny_set(4), &[0, 1, 2, 3]);
        assert!((norm.mean[0] - 0.5).abs() < 1e-6);
        assert!((norm.std[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn batches_are_normalised() {
        let data = NormalizedImages {
            set: Arc::new(tiny_set(2)),
            normalization: Normalization {
                mean: vec![0.5],
                std: vec![0.5],
            },
        };
        let HostBatch::Images {
            pixels,
            shape,
            labels,
            ..
        } = Samples::batch(&data, &[1, 0])
        else {
            panic!("an image batch");
        };
        assert_eq!(pixels, [-1.0, 1.0, -1.0, 1.0]);
        assert_eq!(shape, [2, 1, 1, 2]);
        assert_eq!(labels, [1, 0]);
    }
}
