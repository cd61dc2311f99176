//! Labelled image sets held in memory as bytes, and the train/valid/test splits over them.

use std::path::Path;
use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{DataError, idx, image_folder};
use crate::config::{DataConfig, DatasetKind};
use crate::model::ImageShape;

/// Images as channel-major bytes (`len × channels × height × width`) with their labels.
pub struct ImageSet {
    pub shape: ImageShape,
    pub pixels: Vec<u8>,
    pub labels: Vec<u16>,
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

/// A subset of an image set, by index.
#[derive(Clone)]
pub struct Split {
    pub set: Arc<ImageSet>,
    pub indices: Arc<Vec<u32>>,
}

impl Split {
    fn new(set: Arc<ImageSet>, indices: Vec<u32>) -> Self {
        Self {
            set,
            indices: Arc::new(indices),
        }
    }

    fn all(set: Arc<ImageSet>) -> Self {
        let indices = (0..set.len() as u32).collect();
        Self::new(set, indices)
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Per-channel mean and standard deviation of pixel values scaled to [0, 1].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

pub struct Splits {
    pub train: Split,
    pub valid: Split,
    pub test: Split,
    pub classes: Vec<String>,
    pub shape: ImageShape,
    pub normalization: Normalization,
}

/// Keeps an image folder's test split independent of its validation split.
const TEST_SPLIT_SALT: u64 = 0x7e57_5917;

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

/// Loads the dataset `config` names and splits it; the validation split is drawn from the
/// training pool with `seed`.
pub fn load_splits(config: &DataConfig, seed: u64) -> Result<Splits, DataError> {
    let (pool, test, classes) = match config.dataset {
        DatasetKind::Mnist | DatasetKind::FashionMnist => {
            let (train, test) = load_idx_pair(config)?;
            let classes = match config.dataset {
                DatasetKind::Mnist => (0..10).map(|digit| digit.to_string()).collect(),
                _ => FASHION_CLASSES
                    .iter()
                    .map(|name| name.to_string())
                    .collect(),
            };
            (
                Split::all(Arc::new(train)),
                Split::all(Arc::new(test)),
                classes,
            )
        }
        DatasetKind::ImageFolder => {
            let folder = image_folder::load(config, seed)?;
            let classes = folder.classes;
            match folder.test {
                Some(test) => (
                    Split::all(Arc::new(folder.train)),
                    Split::all(Arc::new(test)),
                    classes,
                ),
                None => {
                    let all = Split::all(Arc::new(folder.train));
                    let (pool, test) = split_off(all, config.test_fraction, seed ^ TEST_SPLIT_SALT);
                    (pool, test, classes)
                }
            }
        }
    };
    if let Some(&label) = pool
        .set
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
    let shape = pool.set.shape;
    let (train, valid) = split_off(pool, config.valid_fraction, seed);
    if train.is_empty() {
        return Err(DataError::Empty {
            path: config.path.clone(),
            what: "the training split".into(),
        });
    }
    let normalization = if config.mean.is_empty() {
        measure_normalization(&train)
    } else {
        Normalization {
            mean: config.mean.clone(),
            std: config.std.clone(),
        }
    };
    Ok(Splits {
        train,
        valid,
        test,
        classes,
        shape,
        normalization,
    })
}

/// Moves a seeded random `fraction` of `split` into a second split.
fn split_off(split: Split, fraction: f64, seed: u64) -> (Split, Split) {
    let mut indices = split.indices.as_ref().clone();
    indices.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let held_out = (indices.len() as f64 * fraction).round() as usize;
    let mut kept = indices.split_off(held_out);
    indices.sort_unstable();
    kept.sort_unstable();
    (
        Split::new(split.set.clone(), kept),
        Split::new(split.set, indices),
    )
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
        })
    };
    Ok((read_pair("train")?, read_pair("t10k")?))
}

fn find_idx(config: &DataConfig, stem: &str) -> Result<std::path::PathBuf, DataError> {
    idx::find(&config.path, stem).ok_or_else(|| DataError::Missing {
        dataset: config.dataset.name().to_string(),
        path: config.path.clone(),
        detail: format!("{stem} (or {stem}.gz) is not there"),
        fetch: fetch_command(config.dataset, &config.path),
    })
}

/// The command that downloads a dataset, for datasets `datasets/fetch` knows.
fn fetch_command(dataset: DatasetKind, path: &Path) -> Option<String> {
    let default = Path::new("datasets").join(dataset.name());
    match dataset {
        DatasetKind::FashionMnist | DatasetKind::Mnist if path == default => {
            Some(format!("datasets/fetch {}", dataset.name()))
        }
        _ => None,
    }
}

fn measure_normalization(split: &Split) -> Normalization {
    let shape = split.set.shape;
    let plane = shape.height * shape.width;
    let mut sum = vec![0f64; shape.channels];
    let mut sum_sq = vec![0f64; shape.channels];
    for &index in split.indices.iter() {
        let image = split.set.image(index as usize);
        for (channel, pixels) in image.chunks_exact(plane).enumerate() {
            let (s, sq) = pixels.iter().fold((0u64, 0u64), |(s, sq), &p| {
                (s + p as u64, sq + (p as u64) * (p as u64))
            });
            sum[channel] += s as f64;
            sum_sq[channel] += sq as f64;
        }
    }
    let count = (split.len() * plane) as f64 * 255.0;
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

    fn tiny_set(n: usize) -> Arc<ImageSet> {
        Arc::new(ImageSet {
            shape: ImageShape {
                channels: 1,
                height: 1,
                width: 2,
            },
            pixels: (0..n).flat_map(|_| [0u8, 255]).collect(),
            labels: (0..n).map(|i| (i % 3) as u16).collect(),
        })
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let (train, valid) = split_off(Split::all(tiny_set(100)), 0.1, 7);
        assert_eq!((train.len(), valid.len()), (90, 10));
        let mut all: Vec<u32> = train
            .indices
            .iter()
            .chain(valid.indices.iter())
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<u32>>());
        let (_, again) = split_off(Split::all(tiny_set(100)), 0.1, 7);
        assert_eq!(valid.indices, again.indices);
        let (_, other) = split_off(Split::all(tiny_set(100)), 0.1, 8);
        assert_ne!(valid.indices, other.indices);
    }

    #[test]
    fn normalization_of_half_black_half_white() {
        let norm = measure_normalization(&Split::all(tiny_set(4)));
        assert!((norm.mean[0] - 0.5).abs() < 1e-6);
        assert!((norm.std[0] - 0.5).abs() < 1e-6);
    }
}
