//! The `stoke` command line: argument parsing and dispatch to the library, and [`Cli`], the
//! whole command line over the kinds a binary registers (the stock `stoke` binary registers
//! the built-in ones; a user's binary adds its own model and data kinds).

mod data;
mod inference;
mod runs;
mod serve;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::data::Data;
use crate::model::Model;
use crate::registry::{self, Registry};

use crate::Error;
use crate::backend;
use crate::config::{self, BackendChoice, ExperimentConfig};
use crate::data::SliceBy;
use crate::distributed;
use crate::run::{CheckpointChoice, RunDir, SplitName};
use crate::train::{self, BenchOptions, CustomLoop, Experiment, Outcome, TrainOptions};

/// stoke: train image classifiers from TOML experiment configs, on wgpu or the CPU.
#[derive(Debug, Parser)]
#[command(name = "stoke", version, about)]
pub struct Arguments {
    #[command(subcommand)]
    command: Command,
}

/// stoke's whole command line (train, resume, eval, bench, export, predict, serve, runs, ...)
/// over the model and data kinds a binary registers:
///
/// ```text
/// fn main() -> std::process::ExitCode {
///     stoke::Cli::with_builtins()
///         .model::<Forecaster>()
///         .data::<EngineWindows>()
///         .run()
/// }
/// ```
///
/// (`examples/forecaster/main.rs` is such a binary.)
///
/// A run or artifact of a kind the binary does not know is refused, naming the kind.
pub struct Cli {
    registry: Registry,
    /// Registrations refused (a name already taken), reported when the binary runs.
    refused: Vec<String>,
}

impl Cli {
    /// The built-in model and data kinds, as the stock `stoke` binary has them.
    pub fn with_builtins() -> Self {
        Self {
            registry: Registry::builtins(),
            refused: Vec::new(),
        }
    }

    /// Adds a model kind of the user's (`[model] kind = M::KIND`).
    pub fn model<M: Model>(mut self) -> Self {
        if let Err(err) = self.registry.model::<M>() {
            self.refused.push(err);
        }
        self
    }

    /// Adds a data kind of the user's (`[data] dataset = D::KIND`).
    pub fn data<D: Data>(mut self) -> Self {
        if let Err(err) = self.registry.data::<D>() {
            self.refused.push(err);
        }
        self
    }

    /// Parses the process's arguments and runs the command; returns its exit code (0 done,
    /// 2 a mistake in the input, 1 a failure while running, 130 interrupted). Call it first
    /// in `main`: the process joins an MPI job here, before any thread starts.
    pub fn run(self) -> std::process::ExitCode {
        crate::process::prepare();
        // Held to the end, where dropping it leaves MPI.
        let _membership = match distributed::init() {
            Ok(membership) => membership,
            Err(err) => {
                eprintln!("error: {err}");
                return std::process::ExitCode::from(err.exit_code());
            }
        };
        if let Some(refused) = self.refused.first() {
            eprintln!("error: {refused}");
            return std::process::ExitCode::from(2);
        }
        registry::install(self.registry).expect("the kinds are installed once, here");
        let arguments = Arguments::parse();
        let code = match run(arguments) {
            Ok(code) => code,
            Err(err) => crate::process::report(&err),
        };
        std::process::ExitCode::from(code)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train the model a config describes, or continue a run with --resume.
    Train {
        /// The experiment's TOML config (not with --resume).
        #[arg(required_unless_present = "resume", conflicts_with = "resume")]
        config: Option<PathBuf>,
        /// Continue this run directory from its newest good checkpoint.
        #[arg(long, value_name = "RUN")]
        resume: Option<PathBuf>,
        /// With --resume: the checkpoint to continue from (best, last or step-<N>).
        #[arg(long, requires = "resume", value_parser = parse_checkpoint)]
        checkpoint: Option<CheckpointChoice>,
        #[command(flatten)]
        overrides: Overrides,
        /// Write the run into this directory instead of a new one under run.runs_dir.
        #[arg(long, value_name = "DIR", conflicts_with = "resume")]
        run_dir: Option<PathBuf>,
        /// Train on N processes of this machine: runs `mpirun -np N` over this command
        /// (needs a build with `--features distributed`).
        #[arg(long, value_name = "N")]
        nproc: Option<usize>,
        /// Continual training: take each IDX shard renamed into DIR, score it, train on it
        /// (with [follow.replay]) and gate the candidate ([follow.gate]), checkpointing
        /// after every shard.
        #[arg(long, value_name = "DIR")]
        follow: Option<PathBuf>,
        /// With --follow: write each candidate the gate passes as the next version vNNNN/ of
        /// this models directory and point its `current` link at it.
        #[arg(long, value_name = "DIR", requires = "follow")]
        promote: Option<PathBuf>,
        /// With --promote: the `stoke serve` to reload after a promotion (http://HOST:PORT).
        #[arg(long, value_name = "URL", requires = "promote")]
        serve_url: Option<String>,
    },
    /// Put a run's checkpoint into a models directory as its next version and point its
    /// `current` link at it (`RUN --to MODELS`), or point `current` one version back
    /// (`--rollback MODELS`); with --serve-url, have the server reload.
    Promote {
        /// The run whose checkpoint becomes the next version (with --to).
        #[arg(
            required_unless_present = "rollback",
            conflicts_with = "rollback",
            requires = "to"
        )]
        run: Option<PathBuf>,
        /// The models directory to put RUN's checkpoint in (vNNNN/ artifacts and `current`).
        #[arg(long, value_name = "MODELS", requires = "run")]
        to: Option<PathBuf>,
        /// With RUN: the checkpoint to promote (best, last or step-<N>); by default the last,
        /// the one `stoke train --resume RUN --follow DIR` continues from.
        #[arg(long, requires = "run", value_parser = parse_checkpoint)]
        checkpoint: Option<CheckpointChoice>,
        /// The models directory `stoke train --follow --promote` writes.
        #[arg(long, value_name = "MODELS")]
        rollback: Option<PathBuf>,
        /// The `stoke serve` to reload (http://HOST:PORT).
        #[arg(long, value_name = "URL")]
        serve_url: Option<String>,
    },
    /// List the compute backends this machine offers and the one `auto` picks.
    Devices {
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
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
        /// Also write an evaluation report into this folder: index.html (one self-contained
        /// page), report.json and the charts.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Group the examples by this field of the text records (image folders: `folder`)
        /// in the report, and flag a group the model fails. Without --report, the report
        /// goes to <run>/report.
        #[arg(long, value_name = "FIELD", conflicts_with = "slice_file")]
        slice_by: Option<String>,
        /// Group images by an attribute from a CSV of `path,<attribute>` (a header row).
        #[arg(long, value_name = "CSV")]
        slice_file: Option<PathBuf>,
        /// The most confidently wrong examples the report lists (default: the run's
        /// eval.worst_errors).
        #[arg(long, value_name = "N")]
        worst_errors: Option<usize>,
    },
    /// Continue a prompt with a trained language model.
    Generate {
        /// A run directory whose model is a language model.
        run: PathBuf,
        #[arg(long, default_value = "")]
        prompt: String,
        /// Tokens to add.
        #[arg(long, default_value_t = 200)]
        tokens: usize,
        /// Softens (above 1) or sharpens (below 1) the distribution; 0 is greedy.
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Sample among the K most likely tokens only.
        #[arg(long, value_name = "K")]
        top_k: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// best, last, or step-<N>.
        #[arg(long, default_value = "best", value_parser = parse_checkpoint)]
        checkpoint: CheckpointChoice,
        /// auto, wgpu, flex or ndarray (default: the run's own).
        #[arg(long)]
        backend: Option<String>,
    },
    /// Write a checkpoint as a self-contained inference artifact (safetensors in PyTorch
    /// layout, burn record, tokenizer, manifest with checksums).
    Export {
        /// A run directory written by `stoke train`.
        run: PathBuf,
        /// best, last, or step-<N>.
        #[arg(long, default_value = "best", value_parser = parse_checkpoint)]
        checkpoint: CheckpointChoice,
        /// The artifact directory to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace an existing artifact at --out.
        #[arg(long)]
        force: bool,
        /// onnx also writes model.onnx (image classifiers; burn-onnx's experimental exporter).
        #[arg(long, value_enum, default_value = "safetensors")]
        format: inference::ExportFormat,
        /// Skip the drift reference (profile.json), which answers the run's holdout and so
        /// needs its data.
        #[arg(long)]
        no_profile: bool,
    },
    /// Classify images or texts, or continue a prompt, with an artifact or a run.
    Predict {
        #[command(flatten)]
        args: inference::PredictArgs,
        /// auto, wgpu, flex or ndarray (default: auto).
        #[arg(long)]
        backend: Option<String>,
    },
    /// Serve an artifact over HTTP: /v1/predict, /v1/generate, /v1/model, /healthz,
    /// /readyz, /metrics and /admin/reload, with dynamic batching and a bounded queue.
    Serve {
        #[command(flatten)]
        args: serve::ServeArgs,
    },
    /// Describe an artifact: model, inputs, labels, metrics, source and files.
    Inspect {
        /// An artifact directory written by `stoke export`.
        artifact: PathBuf,
        /// Print the whole manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Learning-rate range test: train briefly with an exponentially growing learning rate,
    /// plot the loss against it, and suggest a learning rate.
    LrFind {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, default_value_t = 1e-7)]
        start_lr: f64,
        #[arg(long, default_value_t = 1.0)]
        end_lr: f64,
        /// Steps of the sweep (it stops early once the loss diverges).
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// Where to write lr-find.svg and lr-find.png.
        #[arg(long, default_value = ".", value_name = "DIR")]
        out: PathBuf,
    },
    /// List, show and compare run directories.
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
    /// Write, convert and examine datasets: synth, pack, inspect.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
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
        /// Time the data path alone (read, decode, batch, move to the device): batches it
        /// delivers per second, to set against the training steps' samples/s.
        #[arg(long)]
        data_only: bool,
    },
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// The experiment's TOML config.
    config: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

impl ConfigArgs {
    fn load(&self) -> Result<ExperimentConfig, Error> {
        self.overrides.load_fresh(&self.config)
    }
}

#[derive(Debug, Args)]
struct Overrides {
    /// Override a config key, e.g. --set optimizer.lr=5e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// auto, wgpu, flex or ndarray; the same as --set run.backend=...
    #[arg(long)]
    backend: Option<String>,
}

impl Overrides {
    fn load(&self, config: &Path) -> Result<ExperimentConfig, Error> {
        let mut overrides = self.set.clone();
        if let Some(backend) = &self.backend {
            overrides.push(format!("run.backend={backend}"));
        }
        Ok(config::load(config, &overrides)?)
    }

    /// [`Self::load`] for a new run: completed from `model.init_from` (its shape and
    /// tokenizer), which a resumed run's recorded config already is.
    fn load_fresh(&self, config: &Path) -> Result<ExperimentConfig, Error> {
        let mut config = self.load(config)?;
        crate::train::resolve(&mut config)?;
        Ok(config)
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

fn select_backend(config: &ExperimentConfig) -> Result<backend::SelectedBackend, Error> {
    let selected = backend::select(config.run.backend, config.run.cpu_backend)?;
    let world = distributed::world();
    if world.is_root() {
        match world.is_distributed() {
            true => eprintln!(
                "backend: {} (on each of {} ranks)",
                selected.reason,
                world.size()
            ),
            false => eprintln!("backend: {}", selected.reason),
        }
    }
    Ok(selected)
}

/// `stoke devices`: wgpu's adapter (or why there is none), the CPU backends and `auto`'s pick.
fn devices(json: bool) {
    let adapter = backend::wgpu_adapter();
    let auto = backend::select(BackendChoice::Auto, config::CpuBackend::Flex)
        .expect("auto always falls back to a CPU backend");
    if json {
        let wgpu = match &adapter {
            Ok(adapter) => serde_json::json!({
                "adapter": adapter.name,
                "device_type": format!("{:?}", adapter.device_type),
                "api": adapter.api,
                "software": adapter.is_software(),
            }),
            Err(why) => serde_json::json!({ "error": why }),
        };
        let report = serde_json::json!({
            "wgpu": wgpu,
            "cpu": ["flex", "ndarray"],
            "auto": auto.name,
            "auto_reason": auto.reason,
        });
        println!("{report}");
        return;
    }
    match &adapter {
        Ok(adapter) if adapter.is_software() => println!(
            "wgpu     {} (emulates a GPU on the CPU)",
            adapter.describe()
        ),
        Ok(adapter) => println!("wgpu     {}", adapter.describe()),
        Err(why) => println!("wgpu     unavailable: {why}"),
    }
    println!("flex     CPU");
    println!("ndarray  CPU");
    println!("auto     {}", auto.reason);
}

fn prepare(config: ExperimentConfig) -> Result<Experiment, Error> {
    let selected = select_backend(&config)?;
    Experiment::prepare(config, selected, None)
}

/// Runs the command; returns the process's exit code.
pub fn run(cli: Arguments) -> Result<u8, Error> {
    let started = Instant::now();
    let world = distributed::world();
    if world.is_distributed() && !matches!(cli.command, Command::Train { .. }) {
        return Err(Error::Usage(format!(
            "this is one of {} processes, but only `stoke train` runs on several; start the \
             other commands without mpirun",
            world.size()
        )));
    }
    match cli.command {
        Command::Train {
            config,
            resume,
            checkpoint,
            overrides,
            run_dir,
            nproc,
            follow,
            promote,
            serve_url,
        } => {
            // A followed run is continued with the options it was started with.
            let again = follow.as_ref().map_or(String::new(), |dir| {
                let mut again = format!(" --follow {}", dir.display());
                if let Some(models) = &promote {
                    again.push_str(&format!(" --promote {}", models.display()));
                }
                if let Some(url) = &serve_url {
                    again.push_str(&format!(" --serve-url {url}"));
                }
                again
            });
            let follow = follow.map(|dir| crate::follow::FollowOptions {
                dir,
                promote,
                serve_url,
            });
            if let Some(nproc) = nproc {
                if world.is_distributed() {
                    return Err(Error::Usage(
                        "--nproc launches the ranks itself; under mpirun or srun leave it out"
                            .into(),
                    ));
                }
                return distributed::launch(nproc, std::env::args_os().collect());
            }
            let outcome = match (config, resume) {
                (_, Some(run_path)) => {
                    let (run, saved) = RunDir::open(&run_path)?;
                    let requested = overrides.load(&run.config_path())?;
                    let selected = select_backend(&requested)?;
                    train::resume(
                        requested,
                        &saved,
                        selected,
                        run,
                        checkpoint,
                        follow.as_ref().map(|follow| follow as &dyn CustomLoop),
                    )?
                }
                (Some(config), None) => {
                    let experiment = prepare(overrides.load_fresh(&config)?)?;
                    train::train(
                        experiment,
                        &TrainOptions {
                            run_dir,
                            custom_loop: follow.as_ref().map(|follow| follow as &dyn CustomLoop),
                        },
                    )?
                }
                (None, None) => unreachable!("clap requires a config or --resume"),
            };
            if let Outcome::Interrupted {
                checkpoint,
                run_dir,
            } = outcome
            {
                let run = run_dir.display();
                if !world.is_distributed() {
                    eprintln!(
                        "interrupted: saved checkpoint {checkpoint}; continue with: stoke train --resume {run}{again}"
                    );
                } else if world.is_root() {
                    let n = world.size();
                    eprintln!(
                        "interrupted: saved checkpoint {checkpoint}; continue with: stoke train \
                         --resume {run} --nproc {n} (or mpirun -np {n} stoke train --resume {run})"
                    );
                }
                return Ok(130);
            }
            if let Outcome::Followed { run_dir, shards } = outcome {
                eprintln!(
                    "followed: {shards} shards taken in all; {} holds follow.jsonl and promotions.jsonl; continue with: stoke train --resume {} --follow DIR",
                    run_dir.display(),
                    run_dir.display()
                );
            }
        }
        Command::Promote {
            run,
            to,
            checkpoint,
            rollback,
            serve_url,
        } => {
            match (run, to, rollback) {
                (Some(run), Some(to), None) => {
                    let choice = checkpoint.unwrap_or(CheckpointChoice::Last);
                    let (version, replaced) =
                        crate::follow::promote::Models::publish(&to, &run, &choice)?;
                    match replaced {
                        Some(replaced) => {
                            println!("{}: current {replaced} -> {version}", to.display())
                        }
                        None => println!("{}: current -> {version}", to.display()),
                    }
                }
                (None, None, Some(rollback)) => {
                    if !rollback.is_dir() {
                        return Err(Error::Usage(format!(
                            "--rollback {}: no such models directory",
                            rollback.display()
                        )));
                    }
                    let models = crate::follow::promote::Models::open(&rollback)?;
                    let (from, to) = models.rollback()?;
                    println!("{}: current {from} -> {to}", rollback.display());
                }
                _ => unreachable!("clap requires RUN --to MODELS or --rollback MODELS"),
            }
            if let Some(url) = serve_url {
                let answer = crate::follow::promote::reload(&url).map_err(Error::Usage)?;
                println!("reloaded: {answer}");
            }
        }
        Command::Devices { json } => devices(json),
        Command::Check { config } => {
            let config = config.load()?;
            registry::load_data(&config.data, config.run.seed, None)?;
            print!("{}", config::to_toml(&config));
        }
        Command::Eval {
            run,
            checkpoint,
            split,
            backend,
            report,
            slice_by,
            slice_file,
            worst_errors,
        } => {
            let backend = backend.as_deref().map(parse_backend).transpose()?;
            let slice_by = SliceBy::chosen(slice_by, slice_file);
            let request = (report.is_some() || slice_by.is_some() || worst_errors.is_some())
                .then_some(train::ReportRequest {
                    dir: report,
                    slice_by,
                    worst_errors,
                });
            let report = train::evaluate_run(&run, &checkpoint, split, backend, request.as_ref())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serializes")
            );
        }
        Command::Generate {
            run,
            prompt,
            tokens,
            temperature,
            top_k,
            seed,
            checkpoint,
            backend,
        } => {
            let backend = backend.as_deref().map(parse_backend).transpose()?;
            let loaded = crate::export::load(&run, &checkpoint, backend)?;
            let options = crate::export::GenerateOptions {
                prompt,
                tokens,
                temperature,
                top_k,
                seed,
            };
            println!("{}", crate::export::generate(&loaded, &options)?);
        }
        Command::Export {
            run,
            checkpoint,
            out,
            force,
            format,
            no_profile,
        } => inference::export(&run, checkpoint, out, force, format, !no_profile)?,
        Command::Predict { args, backend } => {
            let backend = backend.as_deref().map(parse_backend).transpose()?;
            return inference::predict(&args, backend);
        }
        Command::Serve { args } => serve::serve(args)?,
        Command::Inspect { artifact, json } => inference::inspect(&artifact, json)?,
        Command::Data { command } => data::run(command)?,
        Command::Runs { command } => runs::run(command)?,
        Command::LrFind {
            config,
            start_lr,
            end_lr,
            steps,
            out,
        } => {
            if !(start_lr > 0.0 && end_lr > start_lr && steps >= 2) {
                return Err(Error::Usage(
                    "lr-find needs 0 < --start-lr < --end-lr and --steps of at least 2".into(),
                ));
            }
            let experiment = prepare(config.load()?)?;
            let options = train::LrFindOptions {
                start_lr,
                end_lr,
                steps,
            };
            let report = train::lr_find(experiment, &options, &out)?;
            for plot in &report.plots {
                eprintln!("wrote {}", plot.display());
            }
            eprintln!(
                "lowest loss at lr {:.2e}; suggested lr {:.2e} (the config has {:.2e})",
                report.lowest_loss_lr, report.suggested_lr, report.config_lr
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serializes")
            );
        }
        Command::Bench {
            config,
            steps,
            warmup,
            data_only,
        } => {
            let experiment = prepare(config.load()?)?;
            let options = BenchOptions {
                steps,
                warmup,
                data_only,
            };
            let report = train::bench(experiment, &options, started)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serializes")
            );
        }
    }
    Ok(0)
}
