//! `stoke data synth`: a labelled image dataset of any size made from MNIST digits, each a
//! seeded random affine transform (rotation, scale, shear, shift) of a source digit plus
//! noise, written as image shards. Training records come from MNIST's training images and
//! test records from its test images, so the two splits share no source digit.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering as Atomic};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::pack::{ShardWriter, Stats, finish};
use super::{Manifest, RecordKind, ShardEntry, shard_name};
use crate::Error;
use crate::config::{DataConfig, DatasetKind, ImageDataConfig};
use crate::data::ImageShape;
use crate::data::image::{ImageSet, read_sets};

pub struct SynthOptions {
    /// The MNIST directory the digits come from.
    pub source: PathBuf,
    pub out: PathBuf,
    pub train_records: usize,
    pub test_records: usize,
    pub shard_records: usize,
    pub seed: u64,
    /// Noise amplitude, as a share of the pixel range.
    pub noise: f32,
}

/// Writes the dataset `options` describe; returns its manifest.
pub fn synth(options: &SynthOptions) -> Result<Manifest, Error> {
    // MNIST as training reads it, so a missing source gets the same message and fetch hint.
    let mnist = DataConfig {
        dataset: DatasetKind::Mnist,
        path: options.source.clone(),
        ..DataConfig::default()
    };
    let sets = read_sets(&mnist, &ImageDataConfig::default(), 0)?;
    let (train_source, test_source) = (sets.train, sets.test.expect("MNIST has a test set"));
    let shape = train_source.shape;
    let classes = (0..10).map(|d| d.to_string()).collect();
    let mut manifest = Manifest::new(RecordKind::Images, classes, Some(shape));
    let out = super::pack::prepare_dir(&options.out)?;
    let mut train_stats = Stats::new(shape.channels);
    for (split, source, records) in [
        ("train", &train_source, options.train_records),
        ("test", &test_source, options.test_records),
    ] {
        let shards = records.div_ceil(options.shard_records);
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::new());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..threads.min(shards) {
                scope.spawn(|| {
                    loop {
                        let shard = next.fetch_add(1, Atomic::Relaxed);
                        if shard >= shards {
                            return;
                        }
                        let first = shard * options.shard_records;
                        let count = options.shard_records.min(records - first);
                        let seed =
                            options.seed ^ ((shard as u64 + 1) << 8) ^ u64::from(split == "test");
                        let result =
                            write_shard(&out, split, shard, count, source, seed, options.noise);
                        results
                            .lock()
                            .expect("no writer panics")
                            .push((shard, result));
                    }
                });
            }
        });
        let mut results = results.into_inner().expect("no writer panics");
        results.sort_by_key(|(shard, _)| *shard);
        let mut entries = Vec::with_capacity(shards);
        for (shard, result) in results {
            let stats = result?;
            if split == "train" {
                train_stats.merge(&stats);
            }
            entries.push(ShardEntry {
                name: shard_name(split, shard),
                records: stats.records,
            });
        }
        manifest.splits.insert(split.into(), entries);
    }
    manifest.normalization = Some(train_stats.normalization());
    finish(&out, &options.out, &manifest)?;
    Ok(manifest)
}

fn write_shard(
    dir: &std::path::Path,
    split: &str,
    shard: usize,
    count: usize,
    source: &ImageSet,
    seed: u64,
    noise: f32,
) -> Result<Stats, Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shape = source.shape;
    let mut writer = ShardWriter::create(dir, &shard_name(split, shard), shape, count)?;
    let mut image = vec![0u8; shape.len()];
    for _ in 0..count {
        let pick = rng.random_range(0..source.len());
        let transform = Affine::random(&mut rng);
        transform.warp(source.image(pick), &mut image, shape, noise, &mut rng);
        writer.push(&image, source.labels[pick] as u8)?;
    }
    writer.finish()
}

/// Maps output pixel positions back to source positions (about the image centre).
struct Affine {
    /// Inverse of rotation · shear · scale.
    inverse: [[f32; 2]; 2],
    shift: [f32; 2],
}

impl Affine {
    fn random(rng: &mut ChaCha8Rng) -> Self {
        let angle = rng.random_range(-15f32..15.0).to_radians();
        let scale = rng.random_range(0.85f32..1.15);
        let shear = rng.random_range(-0.15f32..0.15);
        let shift = [rng.random_range(-2f32..2.0), rng.random_range(-2f32..2.0)];
        let (sin, cos) = angle.sin_cos();
        // forward = [[cos, -sin], [sin, cos]] · [[scale, shear·scale], [0, scale]]
        let forward = [
            [cos * scale, (cos * shear - sin) * scale],
            [sin * scale, (sin * shear + cos) * scale],
        ];
        let det = forward[0][0] * forward[1][1] - forward[0][1] * forward[1][0];
        let inverse = [
            [forward[1][1] / det, -forward[0][1] / det],
            [-forward[1][0] / det, forward[0][0] / det],
        ];
        Self { inverse, shift }
    }

    /// Writes `source` transformed into `out`, bilinearly sampled, plus uniform noise of
    /// amplitude `noise` × 255.
    fn warp(
        &self,
        source: &[u8],
        out: &mut [u8],
        shape: ImageShape,
        noise: f32,
        rng: &mut ChaCha8Rng,
    ) {
        let (height, width) = (shape.height, shape.width);
        let centre = [(width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0];
        let at = |x: isize, y: isize| -> f32 {
            if x < 0 || y < 0 || x >= width as isize || y >= height as isize {
                0.0
            } else {
                f32::from(source[y as usize * width + x as usize])
            }
        };
        for y in 0..height {
            for x in 0..width {
                let dx = x as f32 - centre[0] - self.shift[0];
                let dy = y as f32 - centre[1] - self.shift[1];
                let sx = self.inverse[0][0] * dx + self.inverse[0][1] * dy + centre[0];
                let sy = self.inverse[1][0] * dx + self.inverse[1][1] * dy + centre[1];
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (x0, y0) = (x0 as isize, y0 as isize);
                let value = at(x0, y0) * (1.0 - fx) * (1.0 - fy)
                    + at(x0 + 1, y0) * fx * (1.0 - fy)
                    + at(x0, y0 + 1) * (1.0 - fx) * fy
                    + at(x0 + 1, y0 + 1) * fx * fy;
                let jitter = if noise > 0.0 {
                    rng.random_range(-noise..noise) * 255.0
                } else {
                    0.0
                };
                out[y * width + x] = (value + jitter).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}
