//! The inference commands: `export`, `predict` and `inspect`, and how their answers are
//! printed (JSON lines for programs, a table for people).

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::Error;
use crate::config::BackendChoice;
use crate::data::DataSpec;
use crate::export::{
    self, ArtifactManifest, GenerateOptions, Prediction, PredictionError, artifact::read_manifest,
};
use crate::run::CheckpointChoice;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One JSON object per input, per line.
    Json,
    /// Aligned columns for people.
    Table,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// An artifact written by `stoke export`, or a run directory (its --checkpoint is used).
    pub model: PathBuf,
    /// Image files, for an image classifier.
    pub images: Vec<PathBuf>,
    /// A text to classify (repeatable).
    #[arg(long)]
    pub text: Vec<String>,
    /// A file of texts to classify, one per line ("-": standard input). Without --text or
    /// --file, a text classifier reads lines from standard input.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Table rows to predict: a CSV file with a header row naming the model's columns.
    #[arg(long, value_name = "CSV")]
    pub rows: Option<PathBuf>,
    /// Classes to report per input (classifiers); sample among the K most likely tokens
    /// (--generate).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Also print the raw logits (JSON only).
    #[arg(long)]
    pub logits: bool,
    /// Language models: continue --prompt by this many tokens.
    #[arg(long, value_name = "TOKENS")]
    pub generate: Option<usize>,
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Sampling temperature for --generate; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With a run directory: best, last or step-<N>.
    #[arg(long, default_value = "best", value_parser = super::parse_checkpoint)]
    pub checkpoint: CheckpointChoice,
}

/// What `stoke export --format` writes besides the manifest and the burn record.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// model.safetensors (PyTorch layout).
    Safetensors,
    /// model.safetensors and model.onnx (image classifiers).
    Onnx,
    /// A Hugging Face folder (config.json, model.safetensors, tokenizer.json) that
    /// transformers loads with from_pretrained (bert and gpt2 runs).
    Hf,
    /// A timm folder (config.json, model.safetensors) that timm loads with
    /// create_model("local-dir:DIR") (timm-resnet runs).
    Timm,
}

/// `stoke export`: writes the artifact and prints what it holds.
pub fn export(
    run: &Path,
    checkpoint: CheckpointChoice,
    out: PathBuf,
    force: bool,
    format: ExportFormat,
    profile: bool,
) -> Result<(), Error> {
    if let ExportFormat::Hf | ExportFormat::Timm = format {
        let (report, what) = match format {
            ExportFormat::Timm => (
                export::export_timm(run, &checkpoint, &out, force)?,
                "a timm folder",
            ),
            _ => (
                export::export_hf(run, &checkpoint, &out, force)?,
                "a Hugging Face folder",
            ),
        };
        eprintln!(
            "exported {} as {what} to {}",
            report.checkpoint,
            out.display()
        );
        for (file, bytes) in &report.files {
            println!("{file}\t{bytes}");
        }
        return Ok(());
    }
    let options = export::ExportOptions {
        checkpoint,
        out,
        replace: force,
        onnx: matches!(format, ExportFormat::Onnx),
        profile,
        parent: None,
    };
    let report = export::export(run, &options)?;
    eprintln!(
        "exported {} of {} to {} ({:.1} MB)",
        report.checkpoint,
        run.display(),
        options.out.display(),
        report.total_bytes as f64 / 1e6
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("the report serializes")
    );
    Ok(())
}

/// `stoke predict`; returns the exit code: 0, or 2 when an input could not be read.
pub fn predict(args: &PredictArgs, backend: Option<BackendChoice>) -> Result<u8, Error> {
    let loaded = export::open(&args.model, &args.checkpoint, backend)?;
    eprintln!("backend: {}", loaded.backend.reason);
    if let Some(tokens) = args.generate {
        let options = GenerateOptions {
            prompt: args.prompt.clone(),
            tokens,
            temperature: args.temperature,
            top_k: args.top_k,
            seed: args.seed,
        };
        println!("{}", export::generate(&loaded, &options)?);
        return Ok(0);
    }
    let top_k = args.top_k.unwrap_or(3);
    let mut answers: Vec<Result<Prediction, PredictionError>> = match loaded.spec {
        DataSpec::ImageClassification { .. } => {
            if args.images.is_empty() {
                return Err(Error::Usage("give image files to classify".into()));
            }
            export::classify_images(&loaded, &args.images, args.batch_size, top_k)?
        }
        DataSpec::TextClassification { .. } => {
            if !args.images.is_empty() {
                return Err(Error::Usage(format!(
                    "{} classifies texts: give them with --text, --file or on standard input, not as {}",
                    args.model.display(),
                    args.images[0].display()
                )));
            }
            let inputs = read_texts(args)?;
            let texts: Vec<String> = inputs.iter().filter_map(|t| t.clone().ok()).collect();
            let mut predictions =
                export::classify_texts(&loaded, &texts, args.batch_size, top_k)?.into_iter();
            inputs
                .into_iter()
                .map(|input| {
                    input.map(|_| {
                        predictions
                            .next()
                            .expect("one prediction per readable text")
                    })
                })
                .collect()
        }
        DataSpec::LanguageModel { .. } => {
            return Err(Error::Usage(format!(
                "{} is a language model: continue a prompt with --generate TOKENS --prompt TEXT",
                args.model.display()
            )));
        }
        DataSpec::Tabular { .. } => {
            let Some(rows) = &args.rows else {
                return Err(Error::Usage(format!(
                    "{} predicts table rows: give them with --rows FILE.csv (a header row naming its columns)",
                    args.model.display()
                )));
            };
            export::predict_rows(&loaded, rows, args.batch_size, top_k)?
        }
        DataSpec::Custom { kind, .. } => {
            return Err(Error::Usage(format!(
                "{} was trained on data of kind \"{kind}\", whose inputs stoke cannot read: predict with the binary that registers it, or load model.safetensors yourself",
                args.model.display()
            )));
        }
    };
    if !args.logits {
        answers
            .iter_mut()
            .flatten()
            .for_each(|prediction| prediction.logits.clear());
    }
    print_answers(&answers, args.format);
    Ok(if answers.iter().any(Result::is_err) {
        2
    } else {
        0
    })
}

/// The texts of --text, then of --file or standard input, in order; a line that is not
/// UTF-8 becomes an error for that line alone.
fn read_texts(args: &PredictArgs) -> Result<Vec<Result<String, PredictionError>>, Error> {
    let mut texts: Vec<_> = args.text.iter().cloned().map(Ok).collect();
    let (name, bytes) = match &args.file {
        Some(path) if path.as_os_str() != "-" => (
            path.display().to_string(),
            std::fs::read(path).map_err(|e| Error::io(path, e))?,
        ),
        None if !args.text.is_empty() => return Ok(texts),
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(Path::new("standard input"), e))?;
            ("standard input".to_string(), bytes)
        }
    };
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        texts.push(
            String::from_utf8(line.to_vec()).map_err(|err| PredictionError {
                input: format!("{name}:{}", number + 1),
                error: format!("not UTF-8 text: {err}"),
            }),
        );
    }
    Ok(texts)
}

fn print_answers(answers: &[Result<Prediction, PredictionError>], format: Format) {
    match format {
        Format::Json => {
            for answer in answers {
                let line = match answer {
                    Ok(prediction) => serde_json::to_string(prediction),
                    Err(error) => serde_json::to_string(error),
                };
                println!("{}", line.expect("answers serialize"));
            }
        }
        Format::Table => {
            // Each input as one line of at most 48 characters, then its answer.
            let rows: Vec<(String, String)> = answers
                .iter()
                .map(|answer| {
                    let (input, outcome) = match answer {
                        Ok(p) => {
                            let mut shown: Vec<String> = p
                                .top
                                .iter()
                                .map(|s| format!("{} {:.4}", s.label, s.probability))
                                .collect();
                            if let Some(values) = &p.values {
                                shown = values
                                    .iter()
                                    .map(|(name, value)| format!("{name} {value:.4}"))
                                    .collect();
                            }
                            (&p.input, shown.join(", "))
                        }
                        Err(e) => (&e.input, format!("error: {}", e.error)),
                    };
                    let input = input.replace(['\n', '\t'], " ");
                    let input = match input.char_indices().nth(48) {
                        Some((cut, _)) => format!("{}…", &input[..cut]),
                        None => input,
                    };
                    (input, outcome)
                })
                .collect();
            let width = rows
                .iter()
                .map(|(input, _)| input.chars().count())
                .max()
                .unwrap_or(0)
                .max(5);
            println!("{:width$}  prediction", "input");
            for (input, outcome) in rows {
                println!("{input:width$}  {outcome}");
            }
        }
    }
}

/// `stoke inspect`: what an artifact is, reads and outputs, and how well it did.
pub fn inspect(dir: &Path, json: bool) -> Result<(), Error> {
    let manifest = read_manifest(dir)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&manifest).expect("the manifest serializes")
        );
    } else {
        print!("{}", describe(dir, &manifest));
    }
    Ok(())
}

fn describe(dir: &Path, manifest: &ArtifactManifest) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "{}: stoke artifact v{} (stoke {})",
        dir.display(),
        manifest.format_version,
        manifest.stoke_version
    ));
    let hyper = toml::to_string(&manifest.model).unwrap_or_default();
    let hyper: Vec<&str> = hyper.lines().filter(|l| !l.starts_with("kind")).collect();
    line(format!(
        "model:   {}, {} parameters ({})",
        manifest.model.kind(),
        manifest.parameters,
        hyper.join(", ")
    ));
    line(format!("input:   {}", manifest.input.describe()));
    match &manifest.input {
        DataSpec::ImageClassification { normalization, .. } => line(format!(
            "         normalised per channel: mean {:?}, std {:?} (pixels scaled to [0, 1])",
            normalization.mean, normalization.std
        )),
        DataSpec::TextClassification { .. } | DataSpec::LanguageModel { .. } => line(format!(
            "         tokenizer: {}",
            manifest.tokenizer.as_deref().unwrap_or("none")
        )),
        DataSpec::Tabular {
            numeric,
            categorical,
            ..
        } => {
            let names = |columns: Vec<&str>| columns.join(", ");
            line(format!(
                "         numeric: {}; categorical: {}",
                names(numeric.iter().map(|c| c.name.as_str()).collect()),
                names(categorical.iter().map(|c| c.name.as_str()).collect())
            ))
        }
        DataSpec::Custom { .. } => {}
    }
    if let Some(classes) = manifest.input.classes() {
        line(format!("labels:  {}", classes.join(", ")));
    }
    for (split, measured) in [
        ("valid", &manifest.metrics.valid),
        ("test", &manifest.metrics.test),
    ] {
        if let Some(m) = measured {
            let metrics: Vec<String> = m
                .metrics
                .iter()
                .filter(|(name, _)| !name.contains('/'))
                .map(|(name, value)| format!(", {name} {value:.4}"))
                .collect();
            line(format!(
                "{:9}loss {:.4}{} ({} samples)",
                format!("{split}:"),
                m.loss,
                metrics.concat(),
                m.samples
            ));
        }
    }
    line(format!(
        "source:  {} {} (step {}, epoch {})",
        manifest.source.run.display(),
        manifest.source.checkpoint,
        manifest.source.step,
        manifest.source.epoch
    ));
    if let Some(lineage) = &manifest.lineage {
        line(format!(
            "lineage: {}, {}, config sha256 {}",
            lineage.code, lineage.dataset, lineage.config_sha256
        ));
        if !lineage.shards.is_empty() {
            let names: Vec<&str> = lineage.shards.iter().map(|s| s.name.as_str()).collect();
            line(format!(
                "         {} shards followed ({}){}",
                names.len(),
                names.join(", "),
                lineage
                    .parent
                    .as_ref()
                    .map_or_else(String::new, |parent| format!(", after {parent}"))
            ));
        }
    }
    if let Ok(Some(profile)) = crate::export::artifact::read_profile(dir, manifest) {
        line(format!(
            "drift:   reference of {}; windows of {}, thresholds {}",
            profile.source,
            profile.window,
            profile
                .thresholds
                .iter()
                .map(|t| format!("{} {} {:.3}", t.statistic, t.method, t.value))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (file, digest) in &manifest.files {
        line(format!(
            "file:    {file} {} bytes sha256 {}",
            digest.bytes, digest.sha256
        ));
    }
    line(format!(
        "tensors: {} in model.safetensors (PyTorch layout), e.g. {}",
        manifest.tensors.len(),
        manifest
            .tensors
            .iter()
            .take(3)
            .map(|t| format!("{} {:?}", t.name, t.shape))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out
}
