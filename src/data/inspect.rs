//! `stoke data inspect`: what is in a labelled dataset and what is wrong with it, before it
//! costs a training run. Counts per split, class balance, unreadable records with their
//! location, exact duplicates, records shared between the training and held-out splits
//! (leakage), and image sizes or text lengths.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::image::{ImageSet, read_sets};
use super::shards::{Manifest, RecordKind, SPLITS, ShardedImages, split_shards};
use super::text::{classification_files, records};
use super::{DataError, Dataset, Skipped};
use crate::config::{DataConfig, DatasetKind, OnError};
use crate::plot::{Bars, write_bar_panels};

/// A class is reported as imbalanced below this share of an even split.
const IMBALANCE: f64 = 0.5;
/// Examples listed per kind of problem.
const EXAMPLES: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct DataReport {
    pub dataset: String,
    pub path: String,
    pub splits: BTreeMap<String, SplitReport>,
    pub classes: Vec<String>,
    /// Records that cannot be read, with their location.
    pub corrupt: Findings,
    /// Records repeating an earlier record of the same split.
    pub duplicates: Findings,
    /// Same input, different labels.
    pub conflicting_labels: Findings,
    /// Validation or test records that also occur in the training split.
    pub leaks: Findings,
    pub imbalanced_classes: Vec<ClassShare>,
    /// Texts: length in characters and in words. Images: the shapes they have.
    pub lengths: BTreeMap<String, Distribution>,
    pub image_shapes: BTreeMap<String, u64>,
    /// One line per problem found, for people.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitReport {
    pub records: u64,
    pub per_class: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Findings {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassShare {
    pub class: String,
    pub records: u64,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    /// (upper bound, count) of ten equal-width buckets, for the plot.
    pub histogram: Vec<(f64, u64)>,
}

impl Distribution {
    fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        let (min, max) = (values[0], values[values.len() - 1]);
        let width = ((max - min) / 10.0).max(f64::EPSILON);
        let mut histogram: Vec<(f64, u64)> =
            (1..=10).map(|i| (min + width * i as f64, 0)).collect();
        for &value in &values {
            let bucket = (((value - min) / width) as usize).min(9);
            histogram[bucket].1 += 1;
        }
        Some(Self {
            min,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max,
            mean: values.iter().sum::<f64>() / values.len() as f64,
            histogram,
        })
    }
}

/// One record as the report sees it: where it is, its label and a hash of its input.
struct Seen {
    split: &'static str,
    location: String,
    label: String,
    input: u64,
}

/// Reads every record of the dataset `config` names, leniently, and reports on it.
pub fn inspect(config: &DataConfig) -> Result<DataReport, DataError> {
    let mut corrupt = Findings::default();
    let mut records = Vec::new();
    let mut lengths: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut image_shapes = BTreeMap::new();
    let lenient = DataConfig {
        on_error: OnError::Skip,
        ..config.clone()
    };
    let classes = match &config.dataset {
        DatasetKind::TextClassification | DatasetKind::TextShards => {
            let text = config.text.clone().unwrap_or_default();
            let mut skipped = Skipped::default();
            for (split, file) in text_files(config)? {
                for record in
                    records::read(&file, &text, config.limit, OnError::Skip, &mut skipped)?
                {
                    lengths
                        .entry("characters".into())
                        .or_default()
                        .push(record.text.chars().count() as f64);
                    lengths
                        .entry("words".into())
                        .or_default()
                        .push(record.text.split_whitespace().count() as f64);
                    records.push(Seen {
                        split,
                        location: format!("{}:{}", file.display(), record.line),
                        label: record.label,
                        input: hash(&record.text),
                    });
                }
            }
            add_skipped(&mut corrupt, &skipped);
            let train_labels = records
                .iter()
                .filter(|r| r.split == "train")
                .map(|r| r.label.as_str());
            super::classes_of(train_labels)
        }
        DatasetKind::Mnist
        | DatasetKind::FashionMnist
        | DatasetKind::ImageFolder
        | DatasetKind::ImageParquet => {
            let image = config.image.clone().unwrap_or_default();
            let sets = read_sets(&lenient, &image, 0)?;
            add_skipped(&mut corrupt, &sets.skipped);
            for (split, set) in [("train", Some(&sets.train)), ("test", sets.test.as_ref())] {
                let Some(set) = set else { continue };
                see_images(split, set, &sets.classes, &mut records, &mut image_shapes);
            }
            sets.classes
        }
        DatasetKind::ImageShards => {
            let opened = ShardedImages::open_dir(config)?;
            for (split, set) in &opened.splits {
                *image_shapes.entry(set.shape().to_string()).or_default() += set.len() as u64;
                set.for_each(|location, image, label| {
                    records.push(Seen {
                        split,
                        location,
                        label: opened
                            .classes
                            .get(label as usize)
                            .cloned()
                            .unwrap_or_else(|| label.to_string()),
                        input: hash(image),
                    });
                })?;
            }
            opened.classes
        }
        DatasetKind::TextCorpus | DatasetKind::Tabular | DatasetKind::Custom(_) => {
            return Err(DataError::Corrupt {
                path: config.path.clone(),
                detail: format!(
                    "stoke data inspect reads labelled image and text datasets; dataset = \"{}\" is not one",
                    config.dataset.name()
                ),
            });
        }
    };
    Ok(report(
        config,
        classes,
        records,
        corrupt,
        lengths,
        image_shapes,
    ))
}

/// The files of a labelled text set or of text shards, each with its split.
fn text_files(config: &DataConfig) -> Result<Vec<(&'static str, PathBuf)>, DataError> {
    if config.dataset == DatasetKind::TextShards {
        let manifest = Manifest::read_kind(&config.path, RecordKind::Texts)?;
        let names = split_shards(&config.path, manifest.as_ref(), ".jsonl")?;
        return Ok(SPLITS
            .into_iter()
            .zip(names)
            .flat_map(|(split, names)| {
                names
                    .into_iter()
                    .map(move |name| (split, config.path.join(format!("{name}.jsonl"))))
            })
            .collect());
    }
    Ok(SPLITS
        .into_iter()
        .zip(classification_files(&config.path)?)
        .filter_map(|(split, file)| Some((split, file?)))
        .collect())
}

fn see_images(
    split: &'static str,
    set: &ImageSet,
    classes: &[String],
    records: &mut Vec<Seen>,
    shapes: &mut BTreeMap<String, u64>,
) {
    *shapes.entry(set.shape.to_string()).or_default() += set.len() as u64;
    for index in 0..set.len() {
        let label = set.labels[index] as usize;
        records.push(Seen {
            split,
            location: format!("{split} image {index}"),
            label: classes
                .get(label)
                .cloned()
                .unwrap_or_else(|| label.to_string()),
            input: hash(set.image(index)),
        });
    }
}

fn add_skipped(corrupt: &mut Findings, skipped: &Skipped) {
    corrupt.count += skipped.count as u64;
    corrupt
        .examples
        .extend(skipped.examples.iter().take(EXAMPLES).cloned());
}

fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
    // SipHash with fixed keys: the same input hashes the same in every run.
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

fn report(
    config: &DataConfig,
    classes: Vec<String>,
    records: Vec<Seen>,
    corrupt: Findings,
    lengths: BTreeMap<String, Vec<f64>>,
    image_shapes: BTreeMap<String, u64>,
) -> DataReport {
    let mut splits: BTreeMap<String, SplitReport> = BTreeMap::new();
    let (mut duplicates, mut conflicting_labels, mut leaks) = Default::default();
    // First sighting of each input in each split: (location, label).
    let mut first: HashMap<(&str, u64), (&str, &str)> = HashMap::new();
    for record in &records {
        let split = splits.entry(record.split.into()).or_default();
        split.records += 1;
        *split.per_class.entry(record.label.clone()).or_default() += 1;
        match first.get(&(record.split, record.input)) {
            Some(&(location, label)) if label == record.label => {
                Findings::add(&mut duplicates, || {
                    format!("{} repeats {location}", record.location)
                })
            }
            Some(&(location, label)) => Findings::add(&mut conflicting_labels, || {
                format!(
                    "{} is labelled \"{}\", the same input at {location} \"{label}\"",
                    record.location, record.label
                )
            }),
            None => {
                first.insert(
                    (record.split, record.input),
                    (&record.location, &record.label),
                );
            }
        }
    }
    for record in records.iter().filter(|r| r.split != "train") {
        if let Some(&(location, _)) = first.get(&("train", record.input)) {
            Findings::add(&mut leaks, || {
                format!(
                    "{} is also in the training split at {location}",
                    record.location
                )
            });
        }
    }
    let imbalanced_classes = imbalance(&classes, splits.get("train"));
    let mut problems = Vec::new();
    for (findings, what) in [
        (&corrupt, "unreadable records"),
        (&duplicates, "duplicate records"),
        (&conflicting_labels, "inputs with conflicting labels"),
        (
            &leaks,
            "held-out records that are also in the training split (leakage)",
        ),
    ] {
        if findings.count > 0 {
            problems.push(format!(
                "{} {what}, e.g. {}",
                findings.count,
                findings.examples.first().map_or("", String::as_str)
            ));
        }
    }
    for class in &imbalanced_classes {
        problems.push(format!(
            "class \"{}\" is underrepresented: {} training records, {:.1} % of the split",
            class.class,
            class.records,
            class.share * 100.0
        ));
    }
    DataReport {
        dataset: config.dataset.name().into(),
        path: config.path.display().to_string(),
        splits,
        classes,
        corrupt,
        duplicates,
        conflicting_labels,
        leaks,
        imbalanced_classes,
        lengths: lengths
            .into_iter()
            .filter_map(|(name, values)| Some((name, Distribution::of(values)?)))
            .collect(),
        image_shapes,
        problems,
    }
}

/// Classes of the training split with less than [`IMBALANCE`] of an even share.
fn imbalance(classes: &[String], train: Option<&SplitReport>) -> Vec<ClassShare> {
    let Some(train) = train.filter(|t| t.records > 0 && classes.len() > 1) else {
        return Vec::new();
    };
    let even = 1.0 / classes.len() as f64;
    classes
        .iter()
        .map(|class| {
            let records = train.per_class.get(class).copied().unwrap_or(0);
            ClassShare {
                class: class.clone(),
                records,
                share: records as f64 / train.records as f64,
            }
        })
        .filter(|share| share.share < even * IMBALANCE)
        .collect()
}

/// Writes the report as JSON to `path` and its charts (class balance per split, length
/// distributions) as SVG next to it; returns the chart's path.
pub fn write_report(report: &DataReport, path: &Path) -> Result<std::path::PathBuf, crate::Error> {
    let json = serde_json::to_vec_pretty(report).expect("a report serialises");
    crate::files::write_atomic(path, &json)?;
    let mut panels: Vec<Bars> = report
        .splits
        .iter()
        .map(|(split, counts)| Bars {
            title: format!("{split}: records per class ({} in all)", counts.records),
            x_label: "class".into(),
            y_label: "records".into(),
            bars: report
                .classes
                .iter()
                .map(|class| {
                    (
                        class.clone(),
                        counts.per_class.get(class).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        })
        .collect();
    for (name, distribution) in &report.lengths {
        panels.push(Bars {
            title: format!("text length in {name} (median {})", distribution.p50),
            x_label: format!("{name}, up to"),
            y_label: "records".into(),
            bars: distribution
                .histogram
                .iter()
                .map(|(upper, count)| (format!("{upper:.0}"), *count as f64))
                .collect(),
        });
    }
    let chart = path.with_extension("svg");
    write_bar_panels(&chart, &panels)?;
    Ok(chart)
}
