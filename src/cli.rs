//! The `stoke` command line: argument parsing and dispatch to the library.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::Error;
use crate::backend;
use crate::config::{self, BackendChoice, ExperimentConfig};
use crate::train::{self, BenchOptions, CheckpointChoice, Experiment, SplitName, TrainOptions};

/// stoke: train image classifiers from TOML experiment configs, on wgpu or the CPU.
#[derive(Debug, Parser)]
#[command(name = "stoke", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train the model a config describes; writes a run directory.
    Train {
        #[command(flatten)]
        config: ConfigArgs,
        /// Write the run into this directory instead of a new one under run.runs_dir.
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Validate a config, check its dataset is present, and print it with defaults filled in.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Score a run's checkpoint on its test split (or another) and print JSON.
    Eval {
        /// A run directory written by `stoke train`.
        run: PathBuf,
        /// best, last, or step-<N>.
        #[arg(long, default_value = "best", value_parser = parse_checkpoint)]
        checkpoint: CheckpointChoice,
        #[arg(long, default_value = "test", value_parser = parse_split)]
        split: SplitName,
        /// auto, wgpu, flex or ndarray (default: the run's own).
        #[arg(long)]
        backend: Option<String>,
    },
    /// Time training steps on the config's model and batch size; print samples/s as JSON.
    Bench {
        #[command(flatten)]
        config: ConfigArgs,
        /// Timed steps.
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// Untimed steps first (kernel compilation, allocator warm-up).
        #[arg(long, default_value_t = 5)]
        warmup: usize,
    },
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// The experiment's TOML config.
    config: PathBuf,
    /// Override a config key, e.g. --set optimizer.lr=5e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// auto, wgpu, flex or ndarray; the same as --set run.backend=...
    #[arg(long)]
    backend: Option<String>,
}

impl ConfigArgs {
    fn load(&self) -> Result<ExperimentConfig, Error> {
        let mut overrides = self.set.clone();
        if let Some(backend) = &self.backend {
            overrides.push(format!("run.backend={backend}"));
        }
        Ok(config::load(&self.config, &overrides)?)
    }
}

fn parse_checkpoint(text: &str) -> Result<CheckpointChoice, String> {
    text.parse()
}

fn parse_split(text: &str) -> Result<SplitName, String> {
    match text {
        "train" => Ok(SplitName::Train),
        "valid" => Ok(SplitName::Valid),
        "test" => Ok(SplitName::Test),
        other => Err(format!("\"{other}\": expected train, valid or test")),
    }
}

/// A `--backend` value checked against the config schema's names.
fn parse_backend(text: &str) -> Result<BackendChoice, Error> {
    let wrapped = format!("[run]\nbackend = \"{text}\"\n");
    let config = config::load_str(std::path::Path::new("--backend"), &wrapped, &[])?;
    Ok(config.run.backend)
}

fn prepare(config: ExperimentConfig) -> Result<Experiment, Error> {
    let selected = backend::select(config.run.backend, config.run.cpu_backend)?;
    eprintln!("backend: {}", selected.reason);
    Experiment::prepare(config, selected)
}

pub fn run(cli: Cli) -> Result<(), Error> {
    let started = Instant::now();
    match cli.command {
        Command::Train { config, run_dir } => {
            let experiment = prepare(config.load()?)?;
            train::train(experiment, &TrainOptions { run_dir })?;
        }
        Command::Check { config } => {
            let config = config.load()?;
            crate::data::load_splits(&config.data, config.run.seed)?;
            print!("{}", config::to_toml(&config));
        }
        Command::Eval {
            run,
            checkpoint,
            split,
            backend,
        } => {
            let backend = backend.as_deref().map(parse_backend).transpose()?;
            let report = train::evaluate_run(&run, &checkpoint, split, backend)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serializes")
            );
        }
        Command::Bench {
            config,
            steps,
            warmup,
        } => {
            let experiment = prepare(config.load()?)?;
            let report = train::bench(experiment, &BenchOptions { steps, warmup }, started)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serializes")
            );
        }
    }
    Ok(())
}
