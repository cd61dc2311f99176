//! Using trained models: exporting a checkpoint as a self-contained artifact
//! (`artifact.rs`), loading a run's checkpoint or an artifact for inference, classifying
//! images and texts (`predict.rs`) and sampling text from a language model (`generate.rs`).

pub mod artifact;
mod generate;
mod hf;
pub mod lineage;
mod predict;
pub mod profile;

pub use crate::run::checkpoint::CheckpointChoice;
pub use artifact::{ArtifactManifest, ExportOptions, ExportReport, export};
pub use generate::{GenerateOptions, generate};
pub use hf::{HfReport, export_hf, export_timm};
pub use predict::{
    Outputs, Prediction, PredictionError, Scored, classify_images, classify_texts, image_input,
    image_logits, image_outputs, predict_rows, text_logits, text_outputs,
};

use std::path::Path;

use burn::prelude::Device;

use crate::Error;
use crate::backend::{self, SelectedBackend};
use crate::config::{BackendChoice, ModelConfig};
use crate::data::{DataSpec, Tokenizer};
use crate::run::RunDir;
use crate::run::checkpoint;
use crate::train::Net;

/// A model ready for inference, with what it needs to read its inputs.
pub struct Loaded {
    pub model_config: ModelConfig,
    /// On a device without autodiff: dropout is off and batch norm uses its running
    /// statistics, as in evaluation.
    pub model: Box<dyn Net>,
    /// What the model reads and outputs (image shape and normalisation, or vocabulary and
    /// lengths; class names).
    pub spec: DataSpec,
    pub tokenizer: Option<Tokenizer>,
    pub backend: SelectedBackend,
    /// Where the weights came from, for people.
    pub source: String,
}

/// Loads an exported artifact, or the `choice` checkpoint of a run directory.
pub fn open(
    path: &Path,
    choice: &CheckpointChoice,
    backend_choice: Option<BackendChoice>,
) -> Result<Loaded, Error> {
    if artifact::is_artifact(path) {
        artifact::open(path, backend_choice)
    } else {
        load(path, choice, backend_choice)
    }
}

/// Loads `choice` of the run at `run_path` onto the run's backend (or `backend_choice`),
/// without reading its dataset: the checkpoint carries the data spec and the tokenizer.
pub fn load(
    run_path: &Path,
    choice: &CheckpointChoice,
    backend_choice: Option<BackendChoice>,
) -> Result<Loaded, Error> {
    let (run, config) = RunDir::open(run_path)?;
    let chosen = run.checkpoints().open(choice)?;
    let spec = chosen.spec()?;
    let tokenizer = chosen.tokenizer()?;
    let backend = backend::select(
        backend_choice.unwrap_or(config.run.backend),
        config.run.cpu_backend,
    )?;
    let mut model = build(&config.model, &spec, &Device::flex())?;
    model.to_device(&backend.device);
    let mut model = model;
    checkpoint::load_model(&chosen.dir, model.as_mut())?;
    Ok(Loaded {
        model_config: config.model,
        model,
        spec,
        tokenizer,
        backend,
        source: format!("{} {}", run_path.display(), chosen.name),
    })
}

/// A model of `config`'s kind for `spec`, built on `device` by the kind registered under its
/// name: a run or artifact of a kind this binary does not know is refused, naming it.
pub(crate) fn build(
    config: &ModelConfig,
    spec: &DataSpec,
    device: &Device,
) -> Result<Box<dyn Net>, Error> {
    crate::registry::registry()
        .model_kind(&config.kind)
        .map_err(Error::Usage)?
        .build(config, spec, device)
}
