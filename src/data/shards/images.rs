//! Image shards streamed from disk: each batch reads its images with positioned reads, so
//! the process holds labels and indices, never pixels beyond the batches in flight.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Manifest, RecordKind, SPLITS, hold_out, shard_files, split_shards, streamed_splits};
use crate::config::{DataConfig, DatasetKind};
use crate::data::ImageShape;
use crate::data::image::{ImageSet, idx, measure_normalization, push_normalized};
use crate::data::{
    DataError, DataSpec, Dataset, HostBatch, Normalization, Samples, Skipped, Splits,
};

/// Records of the training split read to measure normalisation when the manifest has none.
const NORMALIZATION_SAMPLE: usize = 20_000;

/// One split's shards: the open image files and every label.
pub struct ShardedImages {
    shape: ImageShape,
    shards: Vec<Shard>,
    /// First record of each shard, then the total.
    starts: Vec<u32>,
    labels: Vec<u16>,
    normalization: Normalization,
}

struct Shard {
    images: File,
    path: PathBuf,
    header: u64,
}

impl ShardedImages {
    /// Opens the shards `names` of `dir`, checking each against its header and labels, and
    /// keeping at most `limit` records.
    fn open(dir: &Path, names: &[String], limit: Option<usize>) -> Result<Self, DataError> {
        let mut shape = None;
        let (mut shards, mut starts, mut labels) = (Vec::new(), vec![0u32], Vec::new());
        for name in names {
            let total = labels.len();
            if limit.is_some_and(|limit| total >= limit) {
                break;
            }
            let (images_path, labels_path) = shard_files(dir, name);
            let images = File::open(&images_path).map_err(|source| DataError::Io {
                path: images_path.clone(),
                source,
            })?;
            let dims = idx::read_header(&images, &images_path)?;
            let this_shape = match dims[..] {
                [_, height, width] => ImageShape {
                    channels: 1,
                    height,
                    width,
                },
                [_, channels, height, width] => ImageShape {
                    channels,
                    height,
                    width,
                },
                _ => {
                    return Err(DataError::Corrupt {
                        path: images_path,
                        detail: format!(
                            "holds {}-dimensional items; image shards hold [height, width] or [channels, height, width] images",
                            dims.len() - 1
                        ),
                    });
                }
            };
            if *shape.get_or_insert(this_shape) != this_shape {
                return Err(DataError::Corrupt {
                    path: images_path,
                    detail: format!(
                        "holds images of {this_shape}; the shards before it hold {}",
                        shape.unwrap()
                    ),
                });
            }
            let shard_labels = idx::read(&labels_path, 1, None)?;
            if shard_labels.dims[0] != dims[0] {
                return Err(DataError::Corrupt {
                    path: labels_path,
                    detail: format!(
                        "holds {} labels for {} images in {}",
                        shard_labels.dims[0],
                        dims[0],
                        images_path.display()
                    ),
                });
            }
            let keep = dims[0].min(limit.map_or(usize::MAX, |limit| limit - total));
            labels.extend(shard_labels.bytes[..keep].iter().map(|&l| u16::from(l)));
            if labels.len() > u32::MAX as usize {
                return Err(DataError::Corrupt {
                    path: dir.to_path_buf(),
                    detail: "a split holds more than 4,294,967,295 records".into(),
                });
            }
            starts.push(labels.len() as u32);
            shards.push(Shard {
                images,
                path: images_path,
                header: 4 + 4 * dims.len() as u64,
            });
        }
        let shape = shape.ok_or_else(|| DataError::Empty {
            path: dir.to_path_buf(),
            what: "image shards".into(),
        })?;
        Ok(Self {
            shape,
            shards,
            starts,
            labels,
            normalization: Normalization {
                mean: Vec::new(),
                std: Vec::new(),
            },
        })
    }

    /// Reads record `index`'s bytes into `buffer`.
    fn read_image(&self, index: u32, buffer: &mut [u8]) {
        let shard = self.starts.partition_point(|&start| start <= index) - 1;
        let Shard {
            images,
            path,
            header,
        } = &self.shards[shard];
        let offset = header + u64::from(index - self.starts[shard]) * buffer.len() as u64;
        if let Err(err) = images.read_exact_at(buffer, offset) {
            // The file was checked against its header when opened: this is the disk failing
            // or the file changing under the run, which no batch can recover from.
            panic!(
                "cannot read record {} of {}: {err}",
                index - self.starts[shard],
                path.display()
            );
        }
    }

    /// The images `indices` name, as bytes (to measure normalisation on a sample).
    fn sample(&self, indices: &[u32]) -> ImageSet {
        let size = self.shape.len();
        let mut pixels = vec![0u8; indices.len() * size];
        for (&index, image) in indices.iter().zip(pixels.chunks_exact_mut(size)) {
            self.read_image(index, image);
        }
        ImageSet {
            shape: self.shape,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i as usize]).collect(),
            origins: Default::default(),
        }
    }
}

impl Samples for ShardedImages {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn batch(&self, indices: &[u32]) -> HostBatch {
        let shape = self.shape;
        let mut image = vec![0u8; shape.len()];
        let mut pixels = Vec::with_capacity(indices.len() * shape.len());
        for &index in indices {
            self.read_image(index, &mut image);
            push_normalized(
                &mut pixels,
                &image,
                shape.height * shape.width,
                &self.normalization,
            );
        }
        HostBatch::Images {
            pixels,
            shape: [indices.len(), shape.channels, shape.height, shape.width],
            labels: indices
                .iter()
                .map(|&i| i64::from(self.labels[i as usize]))
                .collect(),
            mixed: None,
        }
    }

    fn resident_bytes(&self) -> usize {
        self.labels.len() * 2 + self.starts.len() * 4 + self.shards.len() * 128
    }

    fn sample_bytes(&self) -> usize {
        self.shape.len() * 4 + 8
    }
}

/// A shard directory's splits, opened and checked against each other and the classes.
pub struct OpenedShards {
    pub manifest: Option<Manifest>,
    pub classes: Vec<String>,
    /// `(split name, its shards)` for the splits present, training first.
    pub splits: Vec<(&'static str, ShardedImages)>,
}

impl ShardedImages {
    /// Opens every split of the shard directory `config.path`.
    pub fn open_dir(config: &DataConfig) -> Result<OpenedShards, DataError> {
        let dir = &config.path;
        if !dir.is_dir() {
            return Err(DataError::Missing {
                dataset: DatasetKind::ImageShards.name().into(),
                path: dir.clone(),
                detail:
                    "no such directory (write shards with `stoke data pack` or `stoke data synth`)"
                        .into(),
                fetch: None,
            });
        }
        let manifest = Manifest::read_kind(dir, RecordKind::Images)?;
        let names = split_shards(dir, manifest.as_ref(), "-images-idx3-ubyte")?;
        if names[0].is_empty() {
            return Err(DataError::Empty {
                path: dir.clone(),
                what:
                    "training shards (train-*-images-idx3-ubyte files or a shards.json listing them)"
                        .into(),
            });
        }
        let mut splits = Vec::new();
        for (split, names) in SPLITS.into_iter().zip(&names) {
            if names.is_empty() {
                continue;
            }
            let set = ShardedImages::open(dir, names, config.limit)?;
            if let Some(manifest) = &manifest {
                let promised = manifest.records(split) as usize;
                if config.limit.is_none() && promised != Samples::len(&set) {
                    return Err(DataError::Corrupt {
                        path: dir.join(super::MANIFEST),
                        detail: format!(
                            "lists {promised} {split} records; the shards hold {}",
                            Samples::len(&set)
                        ),
                    });
                }
            }
            splits.push((split, set));
        }
        let train = &splits[0].1;
        let classes = match &manifest {
            Some(manifest) => manifest.classes.clone(),
            None => {
                let top = train.labels.iter().copied().max().unwrap_or(0);
                (0..=top).map(|class| class.to_string()).collect()
            }
        };
        for (_, set) in &splits {
            if set.shape != train.shape {
                return Err(DataError::Corrupt {
                    path: set.shards[0].path.clone(),
                    detail: format!(
                        "holds images of {}; the training shards hold {}",
                        set.shape, train.shape
                    ),
                });
            }
            if let Some(position) = set.labels.iter().position(|&l| l as usize >= classes.len()) {
                let shard = set.starts.partition_point(|&s| s as usize <= position) - 1;
                return Err(DataError::Corrupt {
                    path: set.shards[shard].path.clone(),
                    detail: format!(
                        "record {} has label {}, out of range for {} classes",
                        position - set.starts[shard] as usize,
                        set.labels[position],
                        classes.len()
                    ),
                });
            }
        }
        Ok(OpenedShards {
            manifest,
            classes,
            splits,
        })
    }

    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Calls `visit(location, image bytes, label)` for every record, reading each shard in
    /// sequence a chunk at a time.
    pub fn for_each(&self, mut visit: impl FnMut(String, &[u8], u16)) -> Result<(), DataError> {
        const CHUNK: usize = 4096;
        let size = self.shape.len();
        let mut buffer = vec![0u8; CHUNK * size];
        for (shard, file) in self.shards.iter().enumerate() {
            let (start, end) = (self.starts[shard], self.starts[shard + 1]);
            for first in (start..end).step_by(CHUNK) {
                let count = (end - first).min(CHUNK as u32) as usize;
                let offset = file.header + u64::from(first - start) * size as u64;
                file.images
                    .read_exact_at(&mut buffer[..count * size], offset)
                    .map_err(|source| DataError::Io {
                        path: file.path.clone(),
                        source,
                    })?;
                for (i, image) in buffer[..count * size].chunks_exact(size).enumerate() {
                    let record = first as usize + i - start as usize;
                    let location = format!("{} record {record}", file.path.display());
                    visit(location, image, self.labels[first as usize + i]);
                }
            }
        }
        Ok(())
    }
}

/// Opens the image shards `config.path` holds; the validation (and test) split is drawn from
/// the training shards with `seed` when the directory has none of its own.
pub fn load(config: &DataConfig, seed: u64) -> Result<Splits, DataError> {
    let opened = ShardedImages::open_dir(config)?;
    let (manifest, classes) = (opened.manifest, opened.classes);
    let mut splits = opened.splits.into_iter();
    let mut train = splits.next().expect("a training split").1;
    let (mut valid, mut test) = (None, None);
    for (split, set) in splits {
        match split {
            "valid" => valid = Some(set),
            _ => test = Some(set),
        }
    }
    let all = (0..Samples::len(&train) as u32).collect();
    let indices = hold_out(all, valid.is_some(), test.is_some(), config, seed);
    let normalization = normalization(config, manifest.as_ref(), &train, &indices[0]);
    let shape = train.shape;
    let shard_starts = train.starts.clone();
    let own = [valid, test].map(|set| {
        set.map(|mut set| {
            set.normalization = normalization.clone();
            let records = (0..Samples::len(&set) as u32).collect();
            (Arc::new(set) as Arc<dyn Dataset>, records)
        })
    });
    train.normalization = normalization.clone();
    let [train, valid, test] = streamed_splits(Arc::new(train), shard_starts, indices, own, config);
    Ok(Splits {
        train,
        valid,
        test,
        spec: DataSpec::ImageClassification {
            input: shape,
            classes,
            normalization,
            resize: None,
        },
        tokenizer: None,
        skipped: Skipped::default(),
        unseen_categories: Default::default(),
    })
}

/// The config's normalisation, else the manifest's, else one measured on an evenly spaced
/// sample of the training split.
fn normalization(
    config: &DataConfig,
    manifest: Option<&Manifest>,
    train: &ShardedImages,
    train_indices: &[u32],
) -> Normalization {
    if let Some(image) = config.image.as_ref().filter(|image| !image.mean.is_empty()) {
        return Normalization {
            mean: image.mean.clone(),
            std: image.std.clone(),
        };
    }
    if let Some(normalization) = manifest.and_then(|m| m.normalization.clone()) {
        return normalization;
    }
    let step = train_indices.len().div_ceil(NORMALIZATION_SAMPLE).max(1);
    let sample: Vec<u32> = train_indices.iter().step_by(step).copied().collect();
    let set = train.sample(&sample);
    measure_normalization(&set, &(0..sample.len() as u32).collect::<Vec<_>>())
}
