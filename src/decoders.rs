//! Every place where bytes from outside become values, callable on bytes: images (PNG,
//! JPEG), IDX files, labelled-text records (JSONL, CSV, Parquet), table rows, tokenizer.json,
//! TOML configs, and a checkpoint's or an artifact's files (manifests, training state,
//! burnpack records, safetensors and pickled PyTorch weights). Each [`Decoder`] runs the very
//! code the commands run (files are written to a scratch directory first where that code
//! reads paths) and returns its error as text; none may panic, whatever the bytes.
//!
//! The fuzz targets (`fuzz/`, one per decoder) and the seeded mutation test
//! (`tests/mutations.rs`) drive these functions, so a decoder added here is fuzzed and
//! mutated with the others. HTTP bodies are mutated against a real `stoke serve` instead.

use std::fs;
use std::path::{Path, PathBuf};

use burn::prelude::Device;
use burn::store::{ModuleStore, PytorchStore, SafetensorsStore, bridge};

use crate::config::{ModelConfig, OnError, TextDataConfig};
use crate::data::{DataSpec, ImageShape, Normalization, Skipped, Tokenizer};

/// One decoder of outside bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// An encoded image (PNG, JPEG, ...), as a photo folder, `predict` and `serve` read one.
    Image,
    /// An IDX images file (`*-images-idx3-ubyte`).
    IdxImages,
    /// An IDX labels file (`*-labels-idx1-ubyte`).
    IdxLabels,
    /// Labelled texts as JSON lines.
    TextJsonl,
    /// Labelled texts as CSV.
    TextCsv,
    /// Labelled texts as Parquet.
    TextParquet,
    /// Table rows as CSV, with a `price` target and whatever other columns they have.
    TableCsv,
    /// A Hugging Face `tokenizer.json` (or stoke's character vocabulary).
    Tokenizer,
    /// An experiment config (TOML).
    Config,
    /// A checkpoint's `manifest.json`.
    CheckpointManifest,
    /// A checkpoint's `state.json`.
    CheckpointState,
    /// A model record (`model.bpk`), loaded into a small MLP.
    ModelRecord,
    /// A safetensors weights file (`model.safetensors` of a timm or Hugging Face folder).
    Safetensors,
    /// A pickled PyTorch state dict (`model.pth`, `pytorch_model.bin`).
    PytorchPickle,
    /// An artifact's `manifest.json` (before its files are checked against it).
    ArtifactManifest,
}

impl Decoder {
    /// Every decoder.
    pub const ALL: [Decoder; 15] = [
        Decoder::Image,
        Decoder::IdxImages,
        Decoder::IdxLabels,
        Decoder::TextJsonl,
        Decoder::TextCsv,
        Decoder::TextParquet,
        Decoder::TableCsv,
        Decoder::Tokenizer,
        Decoder::Config,
        Decoder::CheckpointManifest,
        Decoder::CheckpointState,
        Decoder::ModelRecord,
        Decoder::Safetensors,
        Decoder::PytorchPickle,
        Decoder::ArtifactManifest,
    ];

    /// The decoder's name: `image`, `idx-images`, ... (the fuzz targets' names).
    pub fn name(self) -> &'static str {
        match self {
            Decoder::Image => "image",
            Decoder::IdxImages => "idx-images",
            Decoder::IdxLabels => "idx-labels",
            Decoder::TextJsonl => "text-jsonl",
            Decoder::TextCsv => "text-csv",
            Decoder::TextParquet => "text-parquet",
            Decoder::TableCsv => "table-csv",
            Decoder::Tokenizer => "tokenizer",
            Decoder::Config => "config",
            Decoder::CheckpointManifest => "checkpoint-manifest",
            Decoder::CheckpointState => "checkpoint-state",
            Decoder::ModelRecord => "model-record",
            Decoder::Safetensors => "safetensors",
            Decoder::PytorchPickle => "pytorch-pickle",
            Decoder::ArtifactManifest => "artifact-manifest",
        }
    }

    /// The decoder called `name`.
    pub fn named(name: &str) -> Option<Decoder> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Decodes `bytes`: `Ok` with what they held, for people, or the error a command would
    /// report.
    pub fn decode(self, bytes: &[u8]) -> Result<String, String> {
        match self {
            Decoder::Image => {
                let shape = ImageShape {
                    channels: 3,
                    height: 16,
                    width: 16,
                };
                crate::data::decode_image(bytes, shape, None)
                    .map(|pixels| format!("{} bytes of pixels", pixels.len()))
            }
            Decoder::IdxImages => idx(bytes, 3),
            Decoder::IdxLabels => idx(bytes, 1),
            Decoder::TextJsonl => texts(bytes, "records.jsonl"),
            Decoder::TextCsv => texts(bytes, "records.csv"),
            Decoder::TextParquet => texts(bytes, "records.parquet"),
            Decoder::TableCsv => table(bytes),
            Decoder::Tokenizer => Tokenizer::from_json(utf8(bytes)?)
                .map(|tokenizer| format!("{} tokens", tokenizer.vocab_size()))
                .map_err(|err| err.to_string()),
            Decoder::Config => crate::config::load_str(Path::new("fuzzed.toml"), utf8(bytes)?, &[])
                .map(|config| format!("a {} config", config.model.kind()))
                .map_err(|err| err.to_string()),
            Decoder::CheckpointManifest => {
                serde_json::from_slice::<crate::run::checkpoint::Manifest>(bytes)
                    .map(|manifest| format!("{} files", manifest.files.len()))
                    .map_err(|err| err.to_string())
            }
            Decoder::CheckpointState => {
                serde_json::from_slice::<crate::run::state::TrainingState>(bytes)
                    .map(|state| format!("step {}", state.global_step))
                    .map_err(|err| err.to_string())
            }
            Decoder::ModelRecord => model_record(bytes),
            Decoder::Safetensors => stored_tensors(bytes, "model.safetensors"),
            Decoder::PytorchPickle => stored_tensors(bytes, "model.pth"),
            Decoder::ArtifactManifest => {
                crate::export::artifact::parse_manifest(Path::new("artifact"), bytes)
                    .map(|manifest| format!("a {} artifact", manifest.model.kind()))
                    .map_err(|err| err.to_string())
            }
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|err| format!("not UTF-8: {err}"))
}

/// This thread's scratch directory (made once; the files in it are written over).
fn scratch() -> PathBuf {
    thread_local! {
        static DIR: PathBuf = {
            let thread = format!("{:?}", std::thread::current().id())
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>();
            let dir = std::env::temp_dir().join(format!(
                "stoke-decoders-{}-{thread}",
                std::process::id()
            ));
            let _ = fs::create_dir_all(&dir);
            dir
        };
    }
    DIR.with(PathBuf::clone)
}

/// `bytes` written as `name` in the scratch directory.
fn scratch_file(name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let path = scratch().join(name);
    fs::write(&path, bytes).map_err(|err| format!("{}: {err}", path.display()))?;
    Ok(path)
}

fn idx(bytes: &[u8], rank: usize) -> Result<String, String> {
    let path = scratch_file("file-idx-ubyte", bytes)?;
    crate::data::image::idx::read(&path, rank, None)
        .map(|data| format!("{} items", data.dims.first().copied().unwrap_or(0)))
        .map_err(|err| err.to_string())
}

fn texts(bytes: &[u8], name: &str) -> Result<String, String> {
    let path = scratch_file(name, bytes)?;
    let mut skipped = Skipped::default();
    crate::data::text::records::read(
        &path,
        &TextDataConfig::default(),
        None,
        OnError::Fail,
        &mut skipped,
    )
    .map(|records| format!("{} records", records.len()))
    .map_err(|err| err.to_string())
}

fn table(bytes: &[u8]) -> Result<String, String> {
    let path = scratch_file("rows.csv", bytes)?;
    let config = crate::config::DataConfig {
        dataset: crate::config::DatasetKind::Tabular,
        path,
        valid_fraction: 0.2,
        tabular: Some(crate::config::TabularDataConfig {
            numeric: vec!["carat".into()],
            categorical: vec!["cut".into()],
            targets: vec!["price".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    crate::data::tabular::load(&config, 0)
        .map(|splits| format!("{} training rows", splits.train.len()))
        .map_err(|err| err.to_string())
}

/// Loads a model record into an MLP of 784-8-10, as a checkpoint's is loaded.
fn model_record(bytes: &[u8]) -> Result<String, String> {
    let path = scratch_file("model.bpk", bytes)?;
    let mlp = crate::config::MlpConfig {
        hidden: vec![8],
        ..Default::default()
    };
    let config = ModelConfig::of("mlp", &mlp);
    let spec = DataSpec::ImageClassification {
        input: ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        classes: (0..10).map(|c| c.to_string()).collect(),
        normalization: Normalization {
            mean: vec![0.5],
            std: vec![0.25],
        },
        resize: None,
    };
    let mut model =
        crate::export::build(&config, &spec, &Device::flex()).map_err(|e| e.to_string())?;
    crate::run::checkpoint::load_model_record(&path, model.as_mut())
        .map(|()| format!("{} parameters", model.num_params()))
        .map_err(|err| err.to_string())
}

/// Reads every tensor of a weights file as a pretrained folder's are read.
fn stored_tensors(bytes: &[u8], name: &str) -> Result<String, String> {
    let path = scratch_file(name, bytes)?;
    let (mut pickle, mut safetensors);
    let tensors = match name.ends_with(".pth") {
        true => {
            pickle = PytorchStore::from_file(&path);
            pickle.get_all_tensors().map_err(|err| err.to_string())?
        }
        false => {
            safetensors = SafetensorsStore::from_file(&path);
            safetensors
                .get_all_tensors()
                .map_err(|err| err.to_string())?
        }
    };
    let mut values = 0;
    for tensor in tensors.values() {
        values += bridge::to_data(tensor)
            .map_err(|err| err.to_string())?
            .num_elements();
    }
    Ok(format!("{values} values"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decoder_has_a_name_that_finds_it() {
        for decoder in Decoder::ALL {
            assert_eq!(Decoder::named(decoder.name()), Some(decoder));
        }
    }

    #[test]
    fn empty_input_is_an_error_for_every_decoder_and_no_panic() {
        for decoder in Decoder::ALL {
            let decoded = std::panic::catch_unwind(|| decoder.decode(b""));
            assert!(decoded.is_ok(), "{} panicked", decoder.name());
        }
    }
}
