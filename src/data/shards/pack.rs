//! Writing image shards: `stoke data pack` (an image dataset as shards of a given size) and
//! the writer `stoke data synth` shares. A dataset is written into `<out>.partial` and
//! renamed to `<out>` when complete, so a killed pack never leaves a half dataset that reads
//! as a whole one.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{MANIFEST, Manifest, RecordKind, SPLITS, ShardEntry, shard_files, shard_name};
use crate::Error;
use crate::config::{DataConfig, DatasetKind};
use crate::data::ImageShape;
use crate::data::image::{idx, read_sets};
use crate::data::text::{classification_files, records};
use crate::data::{Normalization, Skipped, classes_of};
use crate::files::{self, PendingFile};

/// What `stoke data pack` wrote.
#[derive(Debug, Serialize)]
pub struct PackReport {
    pub out: PathBuf,
    pub classes: usize,
    /// Image shards: the images' shape.
    pub image: Option<ImageShape>,
    /// Split → (records, shards).
    pub splits: Vec<(String, u64, usize)>,
    pub bytes: u64,
}

/// Writes the dataset `config` names as shards of about `shard_bytes` each: images as IDX
/// shards, labelled texts as JSONL shards.
pub fn pack(
    config: &DataConfig,
    seed: u64,
    out: &Path,
    shard_bytes: u64,
) -> Result<PackReport, Error> {
    match &config.dataset {
        DatasetKind::TextClassification => return pack_texts(config, out, shard_bytes),
        DatasetKind::Mnist
        | DatasetKind::FashionMnist
        | DatasetKind::ImageFolder
        | DatasetKind::ImageParquet => {}
        other => {
            return Err(Error::Usage(format!(
                "stoke data pack reads labelled datasets (mnist, fashion-mnist, image-folder, image-parquet, text-classification); dataset = \"{}\" is not one",
                other.name()
            )));
        }
    }
    let image = config.image.clone().unwrap_or_default();
    let sets = read_sets(config, &image, seed)?;
    if sets.classes.len() > 256 {
        return Err(Error::Usage(format!(
            "image shards store labels as bytes: at most 256 classes, {} has {}",
            config.path.display(),
            sets.classes.len()
        )));
    }
    let shape = sets.train.shape;
    let shard_records = (shard_bytes / (shape.len() as u64 + 1)).max(1) as usize;
    let mut manifest = Manifest::new(RecordKind::Images, sets.classes.clone(), Some(shape));
    let partial = prepare_dir(out)?;
    let mut report = PackReport {
        out: out.to_path_buf(),
        classes: sets.classes.len(),
        image: Some(shape),
        splits: Vec::new(),
        bytes: 0,
    };
    for (split, set) in [("train", Some(&sets.train)), ("test", sets.test.as_ref())] {
        let Some(set) = set else { continue };
        let mut entries = Vec::new();
        let mut stats = Stats::new(shape.channels);
        for (shard, first) in (0..set.len()).step_by(shard_records).enumerate() {
            let count = shard_records.min(set.len() - first);
            let mut writer =
                ShardWriter::create(&partial, &shard_name(split, shard), shape, count)?;
            for index in first..first + count {
                writer.push(set.image(index), set.labels[index] as u8)?;
            }
            let shard_stats = writer.finish()?;
            stats.merge(&shard_stats);
            entries.push(ShardEntry {
                name: shard_name(split, shard),
                records: count as u64,
            });
        }
        if split == "train" {
            manifest.normalization = Some(stats.normalization());
        }
        report.bytes += stats.records * (shape.len() as u64 + 1);
        report
            .splits
            .push((split.into(), stats.records, entries.len()));
        manifest.splits.insert(split.into(), entries);
    }
    finish(&partial, out, &manifest)?;
    Ok(report)
}

/// Writes the labelled texts `config` names as JSONL shards with the config's field names, so
/// that the same `[data.text]` reads them; bad records fail or are skipped as configured.
fn pack_texts(config: &DataConfig, out: &Path, shard_bytes: u64) -> Result<PackReport, Error> {
    let fields = config.text.clone().unwrap_or_default();
    let files = classification_files(&config.path)?;
    let mut skipped = Skipped::default();
    let mut splits = Vec::new();
    for (split, file) in SPLITS.into_iter().zip(files) {
        if let Some(file) = file {
            let records =
                records::read(&file, &fields, config.limit, config.on_error, &mut skipped)?;
            splits.push((split, records));
        }
    }
    let classes = classes_of(splits[0].1.iter().map(|r| r.label.as_str()));
    let mut manifest = Manifest::new(RecordKind::Texts, classes.clone(), None);
    let partial = prepare_dir(out)?;
    let mut report = PackReport {
        out: out.to_path_buf(),
        classes: classes.len(),
        image: None,
        splits: Vec::new(),
        bytes: 0,
    };
    for (split, records) in &splits {
        let mut entries: Vec<ShardEntry> = Vec::new();
        // The shard being written and the bytes it holds.
        let mut shard: Option<(PendingFile, u64)> = None;
        for record in records {
            let mut line = serde_json::Map::new();
            line.insert(fields.text_field.clone(), record.text.clone().into());
            line.insert(fields.label_field.clone(), record.label.clone().into());
            let mut bytes = serde_json::to_vec(&line).expect("a record serialises");
            bytes.push(b'\n');
            if shard
                .as_ref()
                .is_none_or(|(_, written)| *written >= shard_bytes)
            {
                if let Some((full, _)) = shard.take() {
                    full.commit()?;
                }
                let name = shard_name(split, entries.len());
                shard = Some((
                    PendingFile::create(&partial.join(format!("{name}.jsonl")))?,
                    0,
                ));
                entries.push(ShardEntry { name, records: 0 });
            }
            let (file, written) = shard.as_mut().expect("a shard is open");
            file.write(&bytes)?;
            *written += bytes.len() as u64;
            entries.last_mut().expect("a shard entry").records += 1;
            report.bytes += bytes.len() as u64;
        }
        if let Some((last, _)) = shard {
            last.commit()?;
        }
        report
            .splits
            .push((split.to_string(), records.len() as u64, entries.len()));
        manifest.splits.insert(split.to_string(), entries);
    }
    if skipped.count > 0 {
        eprintln!(
            "warning: skipped {} bad records (data.on_error = \"skip\"), e.g. {}",
            skipped.count,
            skipped.examples.first().cloned().unwrap_or_default()
        );
    }
    finish(&partial, out, &manifest)?;
    Ok(report)
}

/// Creates `<out>.partial` (empty) to write into, refusing an `out` that holds anything.
pub(super) fn prepare_dir(out: &Path) -> Result<PathBuf, Error> {
    if out.exists() && fs::read_dir(out).map_or(true, |mut entries| entries.next().is_some()) {
        return Err(Error::Usage(format!(
            "{} already exists and is not empty; choose another --out or remove it",
            out.display()
        )));
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(|source| Error::io(&partial, source))?;
    }
    fs::create_dir_all(&partial).map_err(|source| Error::io(&partial, source))?;
    Ok(partial)
}

/// Writes the manifest into `partial` and moves it to `out`.
pub(super) fn finish(partial: &Path, out: &Path, manifest: &Manifest) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
    files::write_synced(&partial.join(MANIFEST), &json)?;
    files::replace_dir(partial, out)
}

/// Per-channel pixel sums, to give a dataset's normalisation without a second pass.
pub(super) struct Stats {
    pub records: u64,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    values_per_channel: f64,
}

impl Stats {
    pub fn new(channels: usize) -> Self {
        Self {
            records: 0,
            sum: vec![0.0; channels],
            sum_sq: vec![0.0; channels],
            values_per_channel: 0.0,
        }
    }

    fn add(&mut self, image: &[u8]) {
        let plane = image.len() / self.sum.len();
        for (channel, pixels) in image.chunks_exact(plane).enumerate() {
            let (s, sq) = pixels.iter().fold((0u64, 0u64), |(s, sq), &p| {
                (s + u64::from(p), sq + u64::from(p) * u64::from(p))
            });
            self.sum[channel] += s as f64;
            self.sum_sq[channel] += sq as f64;
        }
        self.records += 1;
        self.values_per_channel += plane as f64;
    }

    pub fn merge(&mut self, other: &Stats) {
        for channel in 0..self.sum.len() {
            self.sum[channel] += other.sum[channel];
            self.sum_sq[channel] += other.sum_sq[channel];
        }
        self.records += other.records;
        self.values_per_channel += other.values_per_channel;
    }

    pub fn normalization(&self) -> Normalization {
        let count = self.values_per_channel.max(1.0);
        let mean: Vec<f64> = self.sum.iter().map(|s| s / count / 255.0).collect();
        let std = self
            .sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| {
                (sq / count / (255.0 * 255.0) - m * m)
                    .max(0.0)
                    .sqrt()
                    .max(1e-6) as f32
            })
            .collect();
        Normalization {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }
}

/// One shard being written: its two IDX files under temporary names until `finish`.
pub(super) struct ShardWriter {
    images: PendingFile,
    labels: PendingFile,
    expected: usize,
    stats: Stats,
}

impl ShardWriter {
    pub fn create(dir: &Path, name: &str, shape: ImageShape, count: usize) -> Result<Self, Error> {
        let (images_path, labels_path) = shard_files(dir, name);
        let mut images = PendingFile::create(&images_path)?;
        let mut labels = PendingFile::create(&labels_path)?;
        let dims = if shape.channels == 1 {
            vec![count, shape.height, shape.width]
        } else {
            vec![count, shape.channels, shape.height, shape.width]
        };
        images.write(&idx::header(&dims))?;
        labels.write(&idx::header(&[count]))?;
        Ok(Self {
            images,
            labels,
            expected: count,
            stats: Stats::new(shape.channels),
        })
    }

    pub fn push(&mut self, image: &[u8], label: u8) -> Result<(), Error> {
        self.images.write(image)?;
        self.labels.write(&[label])?;
        self.stats.add(image);
        Ok(())
    }

    /// Flushes, fsyncs and renames both files into place.
    pub fn finish(self) -> Result<Stats, Error> {
        assert_eq!(
            self.stats.records as usize, self.expected,
            "a shard gets the records its header promises"
        );
        self.images.commit()?;
        self.labels.commit()?;
        Ok(self.stats)
    }
}
