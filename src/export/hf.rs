//! `stoke export --format hf`: a run's checkpoint as a Hugging Face folder (`config.json`,
//! `model.safetensors`, `tokenizer.json`) that `transformers` loads with `from_pretrained`,
//! for the families it shares with stoke (`bert`, `gpt2`, and `timm-vit` and `timm-convnext`
//! as `ViTForImageClassification` and `ConvNextForImageClassification` with their
//! `preprocessor_config.json`); and `--format timm`: a `timm-resnet`, `timm-vit` or
//! `timm-convnext` run as a timm folder (`config.json`, `model.safetensors`) that
//! `timm.create_model("local-dir:…")` loads.

use std::path::Path;

use super::{CheckpointChoice, Loaded, load};
use crate::Error;
use crate::config::BackendChoice;
use crate::data::DataSpec;
use crate::run::RunDir;
use crate::weights::hf;

/// The model card's file name, as the Hub reads it.
const CARD_FILE: &str = "README.md";

/// What `export_hf` wrote.
pub struct HfReport {
    pub checkpoint: String,
    pub files: Vec<(String, u64)>,
}

/// Writes `choice` of the run at `run_path` into the folder `out` (atomically; an existing
/// folder only with `replace`).
pub fn export_hf(
    run_path: &Path,
    choice: &CheckpointChoice,
    out: &Path,
    replace: bool,
) -> Result<HfReport, Error> {
    super::artifact::refuse_existing(out, replace)?;
    let Loaded {
        model_config,
        model,
        spec,
        tokenizer,
        source,
        ..
    } = load(run_path, choice, Some(BackendChoice::Flex))?;
    if !["bert", "gpt2", "timm-vit", "timm-convnext"].contains(&model_config.kind()) {
        return Err(Error::Usage(format!(
            "--format hf writes bert, gpt2, timm-vit and timm-convnext models; {} is a {} run (export it as an artifact)",
            run_path.display(),
            model_config.kind()
        )));
    }
    let export = hf::export(&model_config, &spec, model.parameters())
        .map_err(|detail| Error::Usage(format!("{}: {detail}", run_path.display())))?;
    let config = serde_json::to_vec_pretty(&export.config).expect("the config serializes");
    let mut files = vec![
        (hf::CONFIG_FILE, config),
        (hf::WEIGHTS_FILE, export.safetensors),
    ];
    if let Some(processor) = &export.preprocessor {
        let processor = serde_json::to_vec_pretty(processor).expect("the config serializes");
        files.push((crate::weights::hf_vision::PREPROCESSOR_FILE, processor));
    }
    match &tokenizer {
        Some(tokenizer) if tokenizer.kind() == "char" => eprintln!(
            "note: stoke's character tokenizer has no Hugging Face form; {} is left out",
            hf::TOKENIZER_FILE
        ),
        Some(tokenizer) => files.push((hf::TOKENIZER_FILE, tokenizer.to_json().into_bytes())),
        None => {}
    }
    files.push((
        CARD_FILE,
        card(run_path, choice, out, "transformers", &spec)?,
    ));
    write_folder(out, &files, source)
}

/// Writes `files` as the folder `out` (atomically) and says what it holds.
fn write_folder(out: &Path, files: &[(&str, Vec<u8>)], source: String) -> Result<HfReport, Error> {
    super::artifact::write_directory(out, files)?;
    Ok(HfReport {
        checkpoint: source,
        files: files
            .iter()
            .map(|(name, bytes)| (name.to_string(), bytes.len() as u64))
            .collect(),
    })
}

/// Writes `choice` of the `timm-resnet`, `timm-vit` or `timm-convnext` run at `run_path` as a timm folder `out`.
pub fn export_timm(
    run_path: &Path,
    choice: &CheckpointChoice,
    out: &Path,
    replace: bool,
) -> Result<HfReport, Error> {
    super::artifact::refuse_existing(out, replace)?;
    let Loaded {
        model_config,
        model,
        spec,
        source,
        ..
    } = load(run_path, choice, Some(BackendChoice::Flex))?;
    let export = crate::weights::timm_export::export(&model_config, &spec, model.parameters())
        .map_err(|detail| Error::Usage(format!("{}: {detail}", run_path.display())))?;
    let config = serde_json::to_vec_pretty(&export.config).expect("the config serializes");
    let files = vec![
        (hf::CONFIG_FILE, config),
        (hf::WEIGHTS_FILE, export.safetensors),
        (CARD_FILE, card(run_path, choice, out, "timm", &spec)?),
    ];
    write_folder(out, &files, source)
}

/// The folder's model card: the Hub's metadata for `library`, the checkpoint's figures and
/// its lineage.
fn card(
    run_path: &Path,
    choice: &CheckpointChoice,
    out: &Path,
    library: &str,
    spec: &DataSpec,
) -> Result<Vec<u8>, Error> {
    let (run, config) = RunDir::open(run_path)?;
    let chosen = run.checkpoints().open(choice)?;
    let (metrics, _, lineage) = super::artifact::provenance(&run, &config, &chosen)?;
    let pipeline = match spec {
        DataSpec::ImageClassification { .. } => Some("image-classification"),
        DataSpec::TextClassification { .. } => Some("text-classification"),
        DataSpec::LanguageModel { .. } => Some("text-generation"),
        _ => None,
    };
    let figures: Vec<(&str, &crate::run::Measured)> =
        [("validation", &metrics.valid), ("test", &metrics.test)]
            .into_iter()
            .filter_map(|(split, measured)| Some((split, measured.as_ref()?)))
            .collect();
    let name = out.file_name().map_or_else(
        || "model".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    Ok(super::lineage::model_card(&name, library, pipeline, &lineage, &figures).into_bytes())
}
