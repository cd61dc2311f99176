//! `model.init_from`: the weights a fresh run starts from, and what they decide about the
//! config before anything is built (the network's shape and the tokenizer of a Hugging Face
//! folder). A resumed run reads its checkpoint instead and never comes here.

use std::path::Path;

use crate::Error;
use crate::config::{ExperimentConfig, ModelConfig, TokenizerConfig, TokenizerKind};
use crate::data::DataSpec;
use crate::export::artifact;
use crate::run::checkpoint::{self, CheckpointChoice, Checkpoints};
use crate::train::Net;
use crate::weights::hf::{self, HfFolder};
use crate::weights::hf_vision;
use crate::weights::timm::{self, TimmFolder};
use crate::weights::{Applied, NamedTensor};

/// Completes a fresh run's `config` from its `model.init_from`: a Hugging Face folder gives
/// the shape keys the config leaves out (refusing ones it contradicts) and, unless the config
/// names a tokenizer, its `tokenizer.json`. The run directory records the completed config,
/// so a resumed run reads nothing from the source again.
pub fn resolve(config: &mut ExperimentConfig) -> Result<(), Error> {
    let Some(from) = config.model.init_from.clone() else {
        return Ok(());
    };
    if !from.exists() {
        return Err(Error::Pretrained {
            from,
            detail: "no such file or directory".into(),
        });
    }
    // Token ids mean something only with the tokenizer the weights were trained with: the
    // folder's, the artifact's or the run's tokenizer.json.
    let tokenizer = if timm::is_timm_folder(&from) {
        let folder = TimmFolder::open(&from)?;
        folder.shape(&mut config.model)?;
        folder.weight_file()?;
        let taken = folder.preprocessing(&mut config.data)?;
        say_taken(&from.join(hf::CONFIG_FILE), &taken);
        None
    } else if hf::is_hf_folder(&from) {
        let folder = HfFolder::open(&from)?;
        folder.shape(&mut config.model)?;
        // Refused now (by `stoke check` too) rather than after the data has loaded.
        folder.weight_files()?;
        if matches!(folder.kind(), "timm-vit" | "timm-convnext") {
            let taken = hf_vision::preprocessing(&folder, &mut config.data)?;
            say_taken(&from.join(hf_vision::PREPROCESSOR_FILE), &taken);
        }
        folder.tokenizer()
    } else if artifact::is_artifact(&from) || from.join("config.toml").is_file() {
        Some(from.join(hf::TOKENIZER_FILE)).filter(|path| path.is_file())
    } else {
        return Err(not_a_source(&from));
    };
    if config.data.tokenizer.is_none()
        && let Some(path) = tokenizer
    {
        config.data.tokenizer = Some(TokenizerConfig {
            kind: TokenizerKind::File,
            path,
            ..TokenizerConfig::default()
        });
    }
    Ok(())
}

/// Says which `[data.image]` keys a checkpoint's preprocessing (in `file`) filled.
fn say_taken(file: &Path, taken: &[String]) {
    if !taken.is_empty() {
        eprintln!(
            "init: data.image from {}: {} (set the keys in [data.image] to use others)",
            file.display(),
            taken.join("; ")
        );
    }
}

/// `model` (freshly initialised from the seed, on the CPU) with its parameters set from
/// `config.init_from`, when there is one; what was set and what stayed fresh is said on stderr.
pub fn initial_weights(
    model: &mut dyn Net,
    config: &ModelConfig,
    spec: &DataSpec,
) -> Result<(), Error> {
    let Some(from) = &config.init_from else {
        return Ok(());
    };
    let (applied, ignored) = if timm::is_timm_folder(from) {
        let (tensors, ignored) = TimmFolder::open(from)?.tensors()?;
        (model.apply(tensors, from)?, ignored)
    } else if hf::is_hf_folder(from) {
        from_hf(model, from)?
    } else {
        from_stoke(model, config, spec, from)?
    };
    describe(from, &applied, ignored);
    Ok(())
}

/// The weights of a stoke artifact, or of a run directory's `model.init_checkpoint`: the same
/// kind of model, matched by name and shape. The head starts fresh when the source was
/// trained for other classes.
fn from_stoke(
    model: &mut dyn Net,
    config: &ModelConfig,
    spec: &DataSpec,
    from: &Path,
) -> Result<(Applied, usize), Error> {
    let refuse = |detail: String| Error::Pretrained {
        from: from.to_path_buf(),
        detail,
    };
    let (source_config, source_spec, record) = if artifact::is_artifact(from) {
        let manifest = artifact::read_manifest(from)?;
        (
            manifest.model,
            manifest.input,
            from.join(checkpoint::MODEL_FILE),
        )
    } else if from.join("config.toml").is_file() {
        let source = crate::config::load(&from.join("config.toml"), &[])?;
        let choice: CheckpointChoice = config.init_checkpoint.parse().map_err(refuse)?;
        let chosen = Checkpoints::new(from.join("checkpoints")).open(&choice)?;
        let spec = chosen.spec()?;
        (source.model, spec, chosen.dir.join(checkpoint::MODEL_FILE))
    } else {
        return Err(not_a_source(from));
    };
    if source_config.kind() != config.kind() {
        return Err(refuse(format!(
            "it holds a {} model, but model.kind = \"{}\"",
            source_config.kind(),
            config.kind()
        )));
    }
    let mut source =
        crate::export::build(&source_config, &source_spec, &burn::prelude::Device::flex())?;
    checkpoint::load_model_record(&record, source.as_mut())?;
    let same_outputs = source_spec.classes() == spec.classes()
        && source_spec.task().outputs() == spec.task().outputs();
    let head = model.head();
    let tensors = source
        .parameters()
        .into_iter()
        .filter(|(path, _)| same_outputs || !under_any(path, head))
        .map(|(path, data)| NamedTensor { path, data })
        .collect();
    let applied = model.apply(tensors, from)?;
    Ok((applied, 0))
}

fn not_a_source(from: &Path) -> Error {
    Error::Pretrained {
        from: from.to_path_buf(),
        detail: "it is neither a Hugging Face or timm folder (config.json), a stoke artifact (manifest.json) nor a run directory (config.toml)".into(),
    }
}

fn under_any(path: &str, prefixes: &[&str]) -> bool {
    prefixes
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}.")))
}

fn from_hf(model: &mut dyn Net, from: &Path) -> Result<(Applied, usize), Error> {
    let folder = HfFolder::open(from)?;
    let (tensors, ignored) = folder.tensors()?;
    // resolve() matched the folder's model_type to the model kind; the folder's family says
    // which of its tensors are the head (a classifier for other classes, a pooler).
    let applied = model.apply_with_head(tensors, folder.family.head(), from)?;
    Ok((applied, ignored))
}

fn describe(from: &Path, applied: &Applied, ignored: usize) {
    let ignored = match ignored {
        0 => String::new(),
        n => format!(" ({n} buffers or pretraining-head tensors not needed)"),
    };
    eprintln!(
        "init: {} tensors from {}{ignored}",
        applied.applied,
        from.display()
    );
    if !applied.fresh.is_empty() {
        eprintln!(
            "init: new, initialised from the seed: {}",
            applied.fresh.join(", ")
        );
    }
}
