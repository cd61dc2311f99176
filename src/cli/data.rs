//! `stoke data`: write, convert and examine datasets.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::ConfigArgs;
use crate::Error;
use crate::config::{self, DataConfig, format_bytes, parse_bytes};
use crate::data::shards::{self, SynthOptions};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write a labelled image dataset of any size (seeded affine transforms of MNIST digits
    /// plus noise) as image shards, for tests and demos.
    Synth {
        /// The shard directory to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Size of the training split, e.g. 5GiB (a record is 785 bytes).
        #[arg(long, value_name = "SIZE", conflicts_with = "records")]
        size: Option<String>,
        /// Records in the training split.
        #[arg(long)]
        records: Option<usize>,
        #[arg(long, default_value_t = 10_000)]
        test_records: usize,
        /// Size of each shard, e.g. 64MiB.
        #[arg(long, default_value = "64MiB", value_name = "SIZE")]
        shard_size: String,
        /// The MNIST directory the digits come from.
        #[arg(long, default_value = "datasets/mnist", value_name = "DIR")]
        from: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Noise amplitude, as a share of the pixel range.
        #[arg(long, default_value_t = 0.1)]
        noise: f32,
    },
    /// Write the labelled dataset a config names as shards: images as IDX shards
    /// (dataset = "image-shards"), texts as JSONL shards (dataset = "text-shards").
    Pack {
        #[command(flatten)]
        config: ConfigArgs,
        /// The shard directory to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Size of each shard, e.g. 64MiB.
        #[arg(long, default_value = "64MiB", value_name = "SIZE")]
        shard_size: String,
    },
    /// Report what a dataset holds and what is wrong with it: counts per split, class
    /// balance, unreadable records, duplicates, train/test leakage, sizes and lengths.
    /// Writes the report as JSON and its charts as SVG.
    Inspect {
        /// An experiment config, or a dataset directory or file.
        target: PathBuf,
        /// The dataset kind of a directory or file (default: guessed from what it holds).
        #[arg(long, value_name = "KIND")]
        dataset: Option<String>,
        /// Where to write the JSON report; the chart goes next to it as .svg.
        #[arg(long, default_value = "data-report.json", value_name = "FILE")]
        report: PathBuf,
    },
    /// Show what the model sees: training images as evaluation sees them and as training
    /// sees them epoch after epoch (augmented with [data.augment]), as one PNG grid.
    Preview {
        #[command(flatten)]
        config: ConfigArgs,
        /// The PNG to write.
        #[arg(long, default_value = "data-preview.png", value_name = "FILE")]
        out: PathBuf,
        /// Training images shown, one row each.
        #[arg(long, default_value_t = 8)]
        samples: usize,
        /// Epochs shown per image.
        #[arg(long, default_value_t = 4)]
        epochs: usize,
    },
}

fn size_arg(flag: &str, text: &str) -> Result<u64, Error> {
    parse_bytes(text).map_err(|detail| Error::Usage(format!("{flag}: {detail}")))
}

pub fn run(command: DataCommand) -> Result<(), Error> {
    match command {
        DataCommand::Synth {
            out,
            size,
            records,
            test_records,
            shard_size,
            from,
            seed,
            noise,
        } => {
            const RECORD: u64 = 28 * 28 + 1;
            let train_records = match (size, records) {
                (Some(size), _) => (size_arg("--size", &size)? / RECORD) as usize,
                (None, Some(records)) => records,
                (None, None) => {
                    return Err(Error::Usage("give --size (e.g. 5GiB) or --records".into()));
                }
            };
            if train_records == 0 || !(0.0..1.0).contains(&noise) {
                return Err(Error::Usage(
                    "--size/--records must give at least one record and --noise must be in [0, 1)"
                        .into(),
                ));
            }
            let shard_records = (size_arg("--shard-size", &shard_size)? / RECORD).max(1) as usize;
            let manifest = shards::synth(&SynthOptions {
                source: from,
                out: out.clone(),
                train_records,
                test_records,
                shard_records,
                seed,
                noise,
            })?;
            for (split, entries) in &manifest.splits {
                let records = manifest.records(split);
                eprintln!(
                    "{split}: {records} records in {} shards ({})",
                    entries.len(),
                    format_bytes(records * RECORD)
                );
            }
            eprintln!(
                "wrote {}; train on it with dataset = \"image-shards\", path = \"{}\"",
                out.display(),
                out.display()
            );
        }
        DataCommand::Preview {
            config,
            out,
            samples,
            epochs,
        } => {
            let config = config.load()?;
            crate::data::preview::write(&config, samples, epochs, &out)?;
            eprintln!("wrote {}", out.display());
        }
        DataCommand::Pack {
            config,
            out,
            shard_size,
        } => {
            let config = config.load()?;
            let shard_bytes = size_arg("--shard-size", &shard_size)?;
            let report = shards::pack(&config.data, config.run.seed, &out, shard_bytes)?;
            for (split, records, shards) in &report.splits {
                eprintln!("{split}: {records} records in {shards} shards");
            }
            let (what, kind) = match report.image {
                Some(shape) => (format!("images of {shape}"), "image-shards"),
                None => ("texts".to_string(), "text-shards"),
            };
            eprintln!(
                "wrote {} ({}, {what}, {} classes); train on it with dataset = \"{kind}\", path = \"{}\"",
                out.display(),
                format_bytes(report.bytes),
                report.classes,
                out.display()
            );
        }
        DataCommand::Inspect {
            target,
            dataset,
            report,
        } => {
            let config = inspect_target(&target, dataset.as_deref())?;
            let result = crate::data::inspect::inspect(&config)?;
            let chart = crate::data::inspect::write_report(&result, &report)?;
            print_report(&result);
            eprintln!("wrote {} and {}", report.display(), chart.display());
        }
    }
    Ok(())
}

/// The data config to inspect: a config file's, or a dataset path's with its kind given or
/// guessed.
fn inspect_target(target: &Path, dataset: Option<&str>) -> Result<DataConfig, Error> {
    if target.extension().is_some_and(|ext| ext == "toml") {
        return Ok(config::load(target, &[])?.data);
    }
    if !target.exists() {
        return Err(Error::Usage(format!(
            "{}: no such file or directory",
            target.display()
        )));
    }
    let kind = match dataset {
        Some(kind) => kind.to_string(),
        None => guess_kind(target).ok_or_else(|| {
            Error::Usage(format!(
                "cannot tell what kind of dataset {} is; give --dataset (mnist, image-folder, image-parquet, image-shards, text-classification)",
                target.display()
            ))
        })?,
    };
    // Through the config loader, so that the kind is checked and defaults are filled in.
    let toml = format!(
        "[data]\ndataset = {}\npath = {}\n",
        toml::Value::String(kind.clone()),
        toml::Value::String(target.display().to_string())
    );
    let toml = if kind.starts_with("text") {
        format!("{toml}[model]\nkind = \"text-classifier\"\n")
    } else {
        toml
    };
    Ok(config::load_str(Path::new("--dataset"), &toml, &[])?.data)
}

fn guess_kind(path: &Path) -> Option<String> {
    let has = |name: &str| path.join(name).exists();
    let extension = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_string);
    let kind = if path.is_file() {
        match extension(path)?.as_str() {
            "jsonl" | "csv" | "ndjson" => "text-classification",
            _ => return None,
        }
    } else if has("train-00000-images-idx3-ubyte") {
        "image-shards"
    } else if has("train-00000.jsonl") {
        "text-shards"
    } else if has(shards::MANIFEST) {
        let manifest = shards::Manifest::read(path).ok()??;
        manifest.records.dataset()
    } else if has("train-images-idx3-ubyte") || has("train-images-idx3-ubyte.gz") {
        "mnist"
    } else if ["train.jsonl", "train.csv", "train.ndjson"]
        .iter()
        .any(|f| has(f))
    {
        "text-classification"
    } else if has("train.parquet") {
        return None; // images or texts: only the columns tell.
    } else {
        "image-folder"
    };
    Some(kind.into())
}

fn print_report(report: &crate::data::inspect::DataReport) {
    println!("{} at {}", report.dataset, report.path);
    for (split, counts) in &report.splits {
        let classes: Vec<String> = counts
            .per_class
            .iter()
            .map(|(class, n)| format!("{class}: {n}"))
            .collect();
        println!(
            "  {split:<6} {:>10} records   {}",
            counts.records,
            classes.join(", ")
        );
    }
    for (name, d) in &report.lengths {
        println!(
            "  {name}: min {} / median {} / p90 {} / p99 {} / max {}",
            d.min, d.p50, d.p90, d.p99, d.max
        );
    }
    for (shape, n) in &report.image_shapes {
        println!("  images of {shape}: {n}");
    }
    if report.problems.is_empty() {
        println!("no problems found");
    } else {
        println!("problems:");
        for problem in &report.problems {
            println!("  - {problem}");
        }
    }
}
