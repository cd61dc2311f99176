//! The exported artifact: a directory that holds everything inference needs and nothing
//! training does.
//!
//! ```text
//! models/mnist-cnn/
//!   manifest.json       what the model is, what it reads and outputs, where it came from,
//!                       and the size and SHA-256 of every other file
//!   model.safetensors   the weights under burn's module paths, in PyTorch layouts
//!                       (Linear weights [out, in], norms' gamma/beta as weight/bias)
//!   model.bpk           the same weights as burn's own record, reloaded exactly by stoke
//!   tokenizer.json      text models only: the Hugging Face tokenizer they were trained with
//!   model.onnx          with `--format onnx` (image classifiers): the inference graph
//!   profile.json        classifiers: what the model answered on its run's holdout, the
//!                       reference `stoke serve` watches for drift (`profile.rs`)
//! ```
//!
//! The directory is written beside its destination and renamed into place, so a killed
//! export leaves no half artifact. Opening one checks the format version, the model kind
//! and every checksum before it builds the model; nothing in it is ever executed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::Loaded;
use super::lineage::{self, Lineage};
use super::profile::{
    DEFAULT_WINDOW, MAX_REFERENCE, Observation, PROFILE_FILE, Profile, feature_names,
};
use crate::Error;
use crate::backend::{self, SelectedBackend};
use crate::config::{BackendChoice, CpuBackend, ExperimentConfig, ModelConfig};
use crate::data::{DataSpec, Tokenizer, load_splits};
use crate::files::{FileDigest, digest, parent_dir, replace_dir, verify_digests, write_synced};
use crate::run::checkpoint::{self, CheckpointChoice, VerifiedCheckpoint};
use crate::run::{Measured, RunDir, Summary};
use crate::train::Net;

/// Names the file format, so that a stray `manifest.json` is not taken for an artifact.
pub const ARTIFACT_FORMAT: &str = "stoke-artifact";
/// The newest artifact layout this build reads and the one it writes.
pub const ARTIFACT_VERSION: u32 = 1;

const MANIFEST_FILE: &str = "manifest.json";
pub const SAFETENSORS_FILE: &str = "model.safetensors";
const RECORD_FILE: &str = "model.bpk";
const TOKENIZER_FILE: &str = "tokenizer.json";
const ONNX_FILE: &str = "model.onnx";

/// What `stoke export` is asked for.
pub struct ExportOptions {
    pub checkpoint: CheckpointChoice,
    /// The artifact directory to write.
    pub out: PathBuf,
    /// Replace an existing artifact at `out`.
    pub replace: bool,
    /// Also write the model as ONNX.
    pub onnx: bool,
    /// Also write the drift reference (`profile.json`) from the run's holdout.
    pub profile: bool,
    /// The version this one replaces in a models directory (`stoke promote RUN --to`), the
    /// lineage's parent when the checkpoint's own state names none.
    pub parent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactManifest {
    /// Always [`ARTIFACT_FORMAT`].
    pub format: String,
    pub format_version: u32,
    pub stoke_version: String,
    /// The model's kind and hyper-parameters, as in a config's `[model]` table.
    pub model: ModelConfig,
    pub parameters: usize,
    /// What the model reads and outputs: image shape, channels and normalisation, or
    /// vocabulary and lengths; the class names in output order.
    pub input: DataSpec,
    /// The tokenizer file, for text models.
    pub tokenizer: Option<String>,
    /// Every tensor of `model.safetensors`: name, dtype and shape, in PyTorch layout.
    pub tensors: Vec<TensorEntry>,
    pub metrics: ArtifactMetrics,
    pub source: Source,
    /// The config, code, data (shards) and parent version it came from; absent in artifacts
    /// of stoke before lineage was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
    /// Size and SHA-256 of every file of the artifact but this manifest.
    pub files: BTreeMap<String, FileDigest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// How well the exported checkpoint did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArtifactMetrics {
    /// The validation at the checkpoint's step, if one ran there.
    pub valid: Option<Measured>,
    /// The test split, when the run's summary scored this very checkpoint.
    pub test: Option<Measured>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub run: PathBuf,
    pub checkpoint: String,
    pub step: usize,
    pub epoch: usize,
}

/// What `stoke export` wrote.
#[derive(Debug, Serialize)]
pub struct ExportReport {
    pub artifact: PathBuf,
    pub checkpoint: String,
    pub files: BTreeMap<String, FileDigest>,
    pub total_bytes: u64,
}

/// Exports a checkpoint of the run at `run_path` as an artifact directory.
pub fn export(run_path: &Path, options: &ExportOptions) -> Result<ExportReport, Error> {
    let out = options.out.as_path();
    refuse_existing(out, options.replace)?;
    let (run, config) = RunDir::open(run_path)?;
    let chosen = run.checkpoints().open(&options.checkpoint)?;
    let spec = chosen.spec()?;
    let tokenizer = chosen.tokenizer()?;
    let model = super::build(&config.model, &spec, &Device::flex())?;
    let mut model = model;
    checkpoint::load_model(&chosen.dir, model.as_mut())?;
    let safetensors = model.safetensors().map_err(|detail| Error::Record {
        path: out.join(SAFETENSORS_FILE),
        detail,
    })?;
    let record_path = chosen.dir.join(checkpoint::MODEL_FILE);
    let record = fs::read(&record_path).map_err(|e| Error::io(&record_path, e))?;

    let tensors = safetensors_index(&safetensors).map_err(|detail| Error::Record {
        path: out.join(SAFETENSORS_FILE),
        detail,
    })?;
    let mut files = vec![(SAFETENSORS_FILE, safetensors), (RECORD_FILE, record)];
    if let Some(tokenizer) = &tokenizer {
        files.push((TOKENIZER_FILE, tokenizer.to_json().into_bytes()));
    }
    if options.onnx {
        files.push((ONNX_FILE, model.onnx(&spec).map_err(Error::Usage)?));
    }
    let parameters = model.num_params();
    if options.profile
        && let Some(profile) = holdout_profile(
            &config,
            &chosen.name,
            &run.path,
            model,
            &spec,
            tokenizer.as_ref(),
        )
    {
        let json = serde_json::to_vec_pretty(&profile).expect("the profile serializes");
        files.push((PROFILE_FILE, json));
    }
    let digests: BTreeMap<String, FileDigest> = files
        .iter()
        .map(|(name, bytes)| (name.to_string(), digest(bytes)))
        .collect();
    let (metrics, source, mut lineage) = provenance(&run, &config, &chosen)?;
    lineage.parent = lineage.parent.or_else(|| options.parent.clone());
    let manifest = ArtifactManifest {
        format: ARTIFACT_FORMAT.into(),
        format_version: ARTIFACT_VERSION,
        stoke_version: env!("CARGO_PKG_VERSION").into(),
        model: config.model.clone(),
        parameters,
        input: spec,
        tokenizer: tokenizer.as_ref().map(|_| TOKENIZER_FILE.to_string()),
        tensors,
        metrics,
        source,
        lineage: Some(lineage),
        files: digests.clone(),
    };
    let manifest = serde_json::to_vec_pretty(&manifest).expect("the manifest serializes");
    files.push((MANIFEST_FILE, manifest));
    write_directory(out, &files)?;
    Ok(ExportReport {
        artifact: out.to_path_buf(),
        checkpoint: chosen.name,
        total_bytes: files.iter().map(|(_, bytes)| bytes.len() as u64).sum(),
        files: digests,
    })
}

/// The drift reference of the exported model: its answers on (up to [`MAX_REFERENCE`]
/// samples of) the run's holdout, the validation split or else the test split. `None` for
/// models that are not classifiers of stoke's inputs, and, with a warning, when the holdout
/// cannot be read here: the artifact is complete without it, and serving then watches no
/// drift.
fn holdout_profile(
    config: &ExperimentConfig,
    checkpoint: &str,
    run: &Path,
    model: Box<dyn Net>,
    spec: &DataSpec,
    tokenizer: Option<&Tokenizer>,
) -> Option<Profile> {
    // Splitting a text dataset and reading its inputs each take the tokenizer.
    let copy = || tokenizer.and_then(|t| Tokenizer::from_json(&t.to_json()).ok());
    let classes = spec.classes()?;
    if matches!(
        spec,
        DataSpec::Custom { .. } | DataSpec::LanguageModel { .. }
    ) {
        return None;
    }
    let warn = |why: String| {
        eprintln!("warning: the artifact gets no drift profile: {why}");
        None
    };
    let splits = match load_splits(&config.data, config.run.seed, copy()) {
        Ok(splits) => splits,
        Err(err) => return warn(format!("its holdout cannot be read here ({err})")),
    };
    let (name, split) = match (splits.valid.len(), splits.test.len()) {
        (0, 0) => return warn("the run holds out no validation or test data".into()),
        (0, _) => ("test", &splits.test),
        _ => ("validation", &splits.valid),
    };
    let stride = split.indices.len().div_ceil(MAX_REFERENCE);
    let indices: Vec<u32> = split.indices.iter().step_by(stride).copied().collect();
    let loaded = Loaded {
        model_config: config.model.clone(),
        model,
        spec: spec.clone(),
        tokenizer: copy(),
        backend: backend::select(BackendChoice::Flex, CpuBackend::Flex).ok()?,
        source: run.display().to_string(),
    };
    let mut observations = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(256) {
        let outputs = match super::predict::outputs_at(&loaded, &split.data, chunk) {
            Ok(outputs) => outputs,
            Err(err) => return warn(err.to_string()),
        };
        observations.extend(
            outputs
                .logits
                .iter()
                .zip(outputs.features)
                .map(|(logits, features)| Observation::new(logits, features)),
        );
    }
    Some(Profile::build(
        format!(
            "{} samples of the {name} split of {}, checkpoint {checkpoint}",
            observations.len(),
            run.display()
        ),
        classes,
        feature_names(spec),
        &observations,
        DEFAULT_WINDOW,
    ))
}

/// The drift reference of the artifact at `dir` whose manifest was verified, if it has one.
pub fn read_profile(dir: &Path, manifest: &ArtifactManifest) -> Result<Option<Profile>, Error> {
    if !manifest.files.contains_key(PROFILE_FILE) {
        return Ok(None);
    }
    let path = dir.join(PROFILE_FILE);
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| Error::Artifact {
            dir: dir.to_path_buf(),
            detail: format!("{PROFILE_FILE}: {err}"),
        })
}

/// What an export records of the checkpoint `chosen` of `run`: how well it did (its
/// validation at its step, and the test split when the run's summary scored this very
/// checkpoint), where it stands in the run, and its lineage.
pub(super) fn provenance(
    run: &RunDir,
    config: &ExperimentConfig,
    chosen: &VerifiedCheckpoint,
) -> Result<(ArtifactMetrics, Source, Lineage), Error> {
    let test = read_summary(&run.path)
        .filter(|s| s.test_checkpoint.as_deref() == Some(chosen.name.as_str()))
        .and_then(|s| s.test);
    let position: Position = chosen.state()?;
    let valid = position
        .last_valid
        .filter(|(step, _)| *step == position.global_step)
        .map(|(_, measured)| measured);
    let source = Source {
        run: run.path.clone(),
        checkpoint: chosen.name.clone(),
        step: position.global_step,
        epoch: position.epoch,
    };
    let lineage = lineage::of_checkpoint(&run.path, config, &chosen.state()?);
    Ok((ArtifactMetrics { valid, test }, source, lineage))
}

/// Where the exported checkpoint stands: the part of its training state an artifact records.
#[derive(Deserialize)]
struct Position {
    global_step: usize,
    epoch: usize,
    last_valid: Option<(usize, Measured)>,
}

fn read_summary(run: &Path) -> Option<Summary> {
    let bytes = fs::read(run.join("summary.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The tensor table of a safetensors file: an 8-byte little-endian header length, then a
/// JSON object of `name: {dtype, shape, data_offsets}` (and `__metadata__`).
fn safetensors_index(bytes: &[u8]) -> Result<Vec<TensorEntry>, String> {
    #[derive(Deserialize)]
    struct Header {
        dtype: String,
        shape: Vec<usize>,
    }
    let length = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or("shorter than its header length")?;
    let header = bytes.get(8..8 + length).ok_or("shorter than its header")?;
    let mut table: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|err| format!("unreadable header: {err}"))?;
    table.remove("__metadata__");
    table
        .into_iter()
        .map(|(name, value)| {
            let entry: Header =
                serde_json::from_value(value).map_err(|err| format!("tensor {name}: {err}"))?;
            Ok(TensorEntry {
                name,
                dtype: entry.dtype,
                shape: entry.shape,
            })
        })
        .collect()
}

/// Refuses to write over an existing `out` unless asked to (`--force`).
pub(super) fn refuse_existing(out: &Path, replace: bool) -> Result<(), Error> {
    match out.exists() && !replace {
        true => Err(Error::Usage(format!(
            "{} already exists; choose another --out or pass --force to replace it",
            out.display()
        ))),
        false => Ok(()),
    }
}

/// Writes `files` into `.tmp-<name>` beside `out`, fsyncs them and the directory, and
/// renames it to `out` (replacing an older artifact there).
pub(super) fn write_directory(out: &Path, files: &[(&str, Vec<u8>)]) -> Result<(), Error> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::Usage(format!("--out {} names no directory", out.display())))?
        .to_string_lossy();
    let parent = parent_dir(out);
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let temp = parent.join(format!(".tmp-{name}"));
    if temp.exists() {
        fs::remove_dir_all(&temp).map_err(|e| Error::io(&temp, e))?;
    }
    fs::create_dir(&temp).map_err(|e| Error::io(&temp, e))?;
    let written = files
        .iter()
        .try_for_each(|(file, bytes)| write_synced(&temp.join(file), bytes))
        .and_then(|()| replace_dir(&temp, out));
    if written.is_err() {
        let _ = fs::remove_dir_all(&temp);
    }
    written
}

/// True when `dir` looks like an artifact rather than a run directory.
pub fn is_artifact(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file()
}

/// Reads and checks an artifact's manifest: its format, version, model kind and every
/// file's checksum.
pub fn read_manifest(dir: &Path) -> Result<ArtifactManifest, Error> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&path).map_err(|err| Error::Artifact {
        dir: dir.to_path_buf(),
        detail: format!("{MANIFEST_FILE}: {err} (is it a directory written by `stoke export`?)"),
    })?;
    let manifest = parse_manifest(dir, &bytes)?;
    verify_digests(dir, &manifest.files).map_err(|detail| Error::Artifact {
        dir: dir.to_path_buf(),
        detail: format!("{detail}; the artifact was altered or damaged"),
    })?;
    Ok(manifest)
}

/// The manifest `bytes` of the artifact at `dir`, checked for its format, version, model
/// kind and the files every artifact has, but not yet against those files.
pub fn parse_manifest(dir: &Path, bytes: &[u8]) -> Result<ArtifactManifest, Error> {
    let refuse = |detail: String| Error::Artifact {
        dir: dir.to_path_buf(),
        detail,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| refuse(format!("{MANIFEST_FILE} is not valid JSON: {err}")))?;
    if value["format"] != ARTIFACT_FORMAT {
        return Err(refuse(format!(
            "{MANIFEST_FILE} does not describe a stoke artifact (its \"format\" is {}, expected \"{ARTIFACT_FORMAT}\")",
            value["format"]
        )));
    }
    match value["format_version"].as_u64() {
        Some(version) if version <= u64::from(ARTIFACT_VERSION) => {}
        Some(version) => {
            return Err(refuse(format!(
                "it has format version {version}, newer than this stoke {} reads (up to {ARTIFACT_VERSION}); upgrade stoke",
                env!("CARGO_PKG_VERSION")
            )));
        }
        None => return Err(refuse(format!("{MANIFEST_FILE} has no format_version"))),
    }
    let kind = value["model"]["kind"].as_str().unwrap_or_default();
    crate::registry::registry()
        .model_kind(kind)
        .map_err(&refuse)?;
    let manifest: ArtifactManifest =
        serde_json::from_value(value).map_err(|err| refuse(format!("{MANIFEST_FILE}: {err}")))?;
    for required in [SAFETENSORS_FILE, RECORD_FILE] {
        if !manifest.files.contains_key(required) {
            return Err(refuse(format!("{MANIFEST_FILE} does not list {required}")));
        }
    }
    Ok(manifest)
}

/// The model of the artifact at `dir` on `device` (its manifest read and its checksums
/// verified), with the manifest: how a followed run scores the version served before it.
pub fn load_net(dir: &Path, device: &Device) -> Result<(ArtifactManifest, Box<dyn Net>), Error> {
    let manifest = read_manifest(dir)?;
    let model = model_of(dir, &manifest, device)?;
    Ok((manifest, model))
}

/// Builds `manifest`'s model on `device` and loads the artifact's weights into it.
fn model_of(
    dir: &Path,
    manifest: &ArtifactManifest,
    device: &Device,
) -> Result<Box<dyn Net>, Error> {
    let mut model = super::build(&manifest.model, &manifest.input, device)?;
    checkpoint::load_model_record(&dir.join(RECORD_FILE), model.as_mut())?;
    Ok(model)
}

/// Opens the artifact at `dir` on `backend_choice` (default: auto, falling back to flex).
pub fn open(dir: &Path, backend_choice: Option<BackendChoice>) -> Result<Loaded, Error> {
    open_verified(dir, backend_choice).map(|(_, loaded)| loaded)
}

/// [`open`], with the manifest whose checksums were verified.
pub fn open_verified(
    dir: &Path,
    backend_choice: Option<BackendChoice>,
) -> Result<(ArtifactManifest, Loaded), Error> {
    let manifest = read_manifest(dir)?;
    let tokenizer = match &manifest.tokenizer {
        Some(file) => {
            let path = dir.join(file);
            let json = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            Some(Tokenizer::from_json(&json).map_err(|err| Error::Artifact {
                dir: dir.to_path_buf(),
                detail: format!("{file}: {err}"),
            })?)
        }
        None => None,
    };
    let backend: SelectedBackend = backend::select(
        backend_choice.unwrap_or(BackendChoice::Auto),
        CpuBackend::Flex,
    )?;
    let mut model = model_of(dir, &manifest, &Device::flex())?;
    model.to_device(&backend.device);
    let loaded = Loaded {
        model_config: manifest.model.clone(),
        model,
        spec: manifest.input.clone(),
        tokenizer,
        backend,
        source: dir.display().to_string(),
    };
    Ok((manifest, loaded))
}
