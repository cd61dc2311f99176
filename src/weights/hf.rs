//! Hugging Face model folders: `config.json` with `model.safetensors` (or the shards a
//! `model.safetensors.index.json` lists) and usually `tokenizer.json`.
//!
//! Reading takes the shape from `config.json` (refusing a stoke config that says otherwise),
//! the tensors through burn-store's safetensors reader, renamed and laid out by `names.rs`.
//! Writing produces a folder `transformers` loads with `from_pretrained`. A `pytorch_model.bin`
//! is never unpickled: the user is told to convert it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::store::{ModuleStore, SafetensorsStore, bridge};
use burn::tensor::{DType, TensorData};
use serde_json::{Value, json};

use super::NamedTensor;
use super::hf_vision;
use super::names::{self, Family, Imported};
use crate::Error;
use crate::config::{BertConfig, BertPooling, Gpt2Config, ModelConfig};
use crate::data::DataSpec;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";
const PICKLE_FILE: &str = "pytorch_model.bin";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A Hugging Face folder whose `config.json` names a family stoke builds.
pub struct HfFolder {
    pub dir: PathBuf,
    pub family: Family,
    config: Value,
}

/// True when `dir` looks like a Hugging Face model folder (it has a `config.json`).
pub fn is_hf_folder(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// A model folder's `config.json` (Hugging Face's or timm's), parsed.
pub fn read_config(dir: &Path) -> Result<Value, Error> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|err| Error::io(&path, err))?;
    serde_json::from_str(&text)
        .map_err(|err| refusal(dir, format!("{CONFIG_FILE} is not valid JSON: {err}")))
}

impl HfFolder {
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let refuse = |detail: String| refusal(dir, detail);
        let config = read_config(dir)?;
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| refuse(format!("{CONFIG_FILE} has no \"model_type\"")))?;
        let family = Family::from_model_type(model_type).ok_or_else(|| {
            refuse(format!(
                "model_type \"{model_type}\" is not one this build reads; it reads {}",
                Family::MODEL_TYPES.join(", ")
            ))
        })?;
        let folder = Self {
            dir: dir.to_path_buf(),
            family,
            config,
        };
        folder.check_architecture()?;
        Ok(folder)
    }

    pub(super) fn refuse(&self, detail: String) -> Error {
        refusal(&self.dir, detail)
    }

    pub(super) fn value(&self, key: &str) -> Option<&Value> {
        self.config.get(key).filter(|value| !value.is_null())
    }

    pub(super) fn text(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }

    /// The stoke model kind that builds the folder's network.
    pub fn kind(&self) -> &'static str {
        match self.family {
            Family::Bert => "bert",
            Family::Gpt2 => "gpt2",
            Family::Vit => "timm-vit",
            Family::Convnext => "timm-convnext",
        }
    }

    pub(super) fn size(&self, key: &str) -> Result<Option<usize>, Error> {
        match self.config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                self.refuse(format!(
                    "{CONFIG_FILE}: \"{key}\" should be a whole number, not {value}"
                ))
            }),
        }
    }

    pub(super) fn number(&self, key: &str) -> Option<f64> {
        self.config.get(key).and_then(Value::as_f64)
    }

    /// What stoke's blocks compute must be what the checkpoint was trained with.
    fn check_architecture(&self) -> Result<(), Error> {
        let expect = |key: &str, allowed: &[&str], default: &str| {
            let value = self.text(key).unwrap_or(default);
            match allowed.contains(&value) {
                true => Ok(()),
                false => Err(self.refuse(format!(
                    "{CONFIG_FILE}: {key} = \"{value}\" is not supported; stoke's {} uses {}",
                    self.text("model_type").unwrap_or_default(),
                    allowed.join(" or ")
                ))),
            }
        };
        match self.family {
            Family::Bert => {
                expect("hidden_act", &["gelu"], "gelu")?;
                expect("position_embedding_type", &["absolute"], "absolute")
            }
            Family::Gpt2 => {
                expect(
                    "activation_function",
                    &["gelu_new", "gelu_pytorch_tanh"],
                    "gelu_new",
                )?;
                match self.config.get("scale_attn_by_inverse_layer_idx") {
                    Some(Value::Bool(true)) => Err(self.refuse(format!(
                        "{CONFIG_FILE}: scale_attn_by_inverse_layer_idx is not supported"
                    ))),
                    _ => Ok(()),
                }
            }
            Family::Vit | Family::Convnext => hf_vision::check_architecture(self),
        }
    }

    /// Fills the keys `model` leaves out from `config.json` and refuses one that differs.
    pub fn shape(&self, model: &mut ModelConfig) -> Result<(), Error> {
        let kind = model.kind.clone();
        let mut conflicts = Vec::new();
        let mut take =
            |key: &str, ours: &mut Option<usize>, theirs: Option<usize>| match (*ours, theirs) {
                (Some(a), Some(b)) if a != b => {
                    conflicts.push(format!("model.{key} = {a} but {CONFIG_FILE} says {b}"))
                }
                (None, theirs) => *ours = theirs,
                _ => {}
            };
        match (self.family, kind.as_str()) {
            (Family::Bert, "bert") => {
                let mut bert: BertConfig = model.settings().map_err(|e| self.refuse(e))?;
                let BertConfig {
                    vocab_size,
                    hidden_size,
                    num_layers,
                    num_heads,
                    intermediate_size,
                    max_positions,
                    type_vocab_size,
                    ..
                } = &mut bert;
                take("vocab_size", vocab_size, self.size("vocab_size")?);
                take("hidden_size", hidden_size, self.size("hidden_size")?);
                take("num_layers", num_layers, self.size("num_hidden_layers")?);
                take("num_heads", num_heads, self.size("num_attention_heads")?);
                let intermediate = self.size("intermediate_size")?;
                take("intermediate_size", intermediate_size, intermediate);
                let positions = self.size("max_position_embeddings")?;
                take("max_positions", max_positions, positions);
                take(
                    "type_vocab_size",
                    type_vocab_size,
                    self.size("type_vocab_size")?,
                );
                bert.layer_norm_eps = bert.layer_norm_eps.or(self.number("layer_norm_eps"));
                bert.dropout = bert.dropout.or(self.number("hidden_dropout_prob"));
                *model = ModelConfig {
                    settings: ModelConfig::of("bert", &bert).settings,
                    ..model.clone()
                };
            }
            (Family::Gpt2, "gpt2") => {
                let mut gpt2: Gpt2Config = model.settings().map_err(|e| self.refuse(e))?;
                let Gpt2Config {
                    vocab_size,
                    hidden_size,
                    num_layers,
                    num_heads,
                    intermediate_size,
                    max_positions,
                    ..
                } = &mut gpt2;
                take("vocab_size", vocab_size, self.size("vocab_size")?);
                let hidden = self.size("n_embd")?;
                take("hidden_size", hidden_size, hidden);
                take("num_layers", num_layers, self.size("n_layer")?);
                take("num_heads", num_heads, self.size("n_head")?);
                // GPT-2 writes n_inner = null for its default, 4 × n_embd.
                let inner = self.size("n_inner")?.or(hidden.map(|h| 4 * h));
                take("intermediate_size", intermediate_size, inner);
                take("max_positions", max_positions, self.size("n_positions")?);
                gpt2.layer_norm_eps = gpt2.layer_norm_eps.or(self.number("layer_norm_epsilon"));
                gpt2.dropout = gpt2.dropout.or(self.number("resid_pdrop"));
                *model = ModelConfig {
                    settings: ModelConfig::of("gpt2", &gpt2).settings,
                    ..model.clone()
                };
            }
            (Family::Vit, "timm-vit") | (Family::Convnext, "timm-convnext") => {
                hf_vision::shape(self, model, &mut conflicts)?
            }
            _ => {
                let wanted = self.kind();
                return Err(self.refuse(format!(
                    "it holds a {} model, but model.kind = \"{kind}\"; set model.kind = \"{wanted}\"",
                    self.text("model_type").unwrap_or(wanted)
                )));
            }
        }
        match conflicts.is_empty() {
            true => Ok(()),
            false => Err(self.refuse(format!(
                "the config names another shape: {}; remove those keys to take the checkpoint's",
                conflicts.join(", ")
            ))),
        }
    }

    /// The safetensors files holding the weights: one, or the shards the index lists.
    pub fn weight_files(&self) -> Result<Vec<PathBuf>, Error> {
        let single = self.dir.join(WEIGHTS_FILE);
        if single.is_file() {
            return Ok(vec![single]);
        }
        let index = self.dir.join(INDEX_FILE);
        if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|err| Error::io(&index, err))?;
            let shards: BTreeSet<String> = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|index| {
                    let map = index.get("weight_map")?.as_object()?;
                    map.values()
                        .map(|file| file.as_str().map(str::to_string))
                        .collect()
                })
                .ok_or_else(|| {
                    self.refuse(format!(
                        "{INDEX_FILE} should hold a \"weight_map\" of tensor names to files"
                    ))
                })?;
            return shards
                .into_iter()
                .map(|shard| {
                    let path = self.dir.join(&shard);
                    match path.is_file() && !shard.contains('/') {
                        true => Ok(path),
                        false => Err(self.refuse(format!(
                            "{INDEX_FILE} lists the shard {shard}, which is not in the folder"
                        ))),
                    }
                })
                .collect();
        }
        if self.dir.join(PICKLE_FILE).is_file() {
            return Err(self.refuse(format!(
                "it holds {PICKLE_FILE} and no {WEIGHTS_FILE}; stoke does not unpickle PyTorch files. Convert it once with: python3 -c \"from transformers import AutoModel; AutoModel.from_pretrained('{dir}').save_pretrained('{dir}')\"",
                dir = self.dir.display()
            )));
        }
        Err(self.refuse(format!("it has no {WEIGHTS_FILE} (nor {INDEX_FILE})")))
    }

    /// Every tensor under stoke's names and layout, in f32; ignorable buffers are left out
    /// and counted.
    pub fn tensors(&self) -> Result<(Vec<NamedTensor>, usize), Error> {
        let mut tensors = Vec::new();
        let mut ignored = 0;
        for file in self.weight_files()? {
            let unreadable = |detail: String| self.refuse(format!("{}: {detail}", file.display()));
            let mut store = SafetensorsStore::from_file(&file);
            let all = store
                .get_all_tensors()
                .map_err(|err| unreadable(err.to_string()))?;
            for (name, tensor) in all {
                let data = bridge::to_data(tensor)
                    .map_err(|err| unreadable(format!("tensor {name}: {err}")))?;
                let data = match data.dtype() {
                    DType::F32 => data,
                    DType::F64 | DType::F16 | DType::BF16 => data.convert::<f32>(),
                    // Integer buffers (position ids) are ignorable or unknown below.
                    _ => data,
                };
                match names::import(self.family, name, data) {
                    Imported::Tensors(parts) => tensors.extend(parts),
                    Imported::Ignored => ignored += 1,
                    Imported::Unknown => {
                        return Err(unreadable(format!(
                            "tensor {name} is not part of a {} model stoke knows",
                            self.text("model_type").unwrap_or_default()
                        )));
                    }
                }
            }
        }
        if self.family == Family::Vit {
            tensors = names::fuse_qkv(tensors).map_err(|detail| self.refuse(detail))?;
        }
        Ok((tensors, ignored))
    }

    /// The folder's `tokenizer.json`, if it has one.
    pub fn tokenizer(&self) -> Option<PathBuf> {
        Some(self.dir.join(TOKENIZER_FILE)).filter(|path| path.is_file())
    }
}

fn refusal(dir: &Path, detail: String) -> Error {
    Error::Pretrained {
        from: dir.to_path_buf(),
        detail,
    }
}

/// What `stoke export --format hf` writes, besides the tokenizer.
pub struct HfExport {
    pub config: Value,
    pub safetensors: Vec<u8>,
    /// A vision model's `preprocessor_config.json`.
    pub preprocessor: Option<Value>,
}

/// `id2label` and `label2id` of a classifier's config.
pub(super) fn label_maps(labels: &[String]) -> (Value, Value) {
    let id2label: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| (i.to_string(), json!(label)))
        .collect();
    let label2id: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| (label.clone(), json!(i)))
        .collect();
    (Value::Object(id2label), Value::Object(label2id))
}

/// A Hugging Face folder's `config.json` and `model.safetensors` (and a vision model's
/// `preprocessor_config.json`) for a stoke `model` trained on `spec`, with `parameters`
/// (stoke path → f32 data).
pub fn export(
    model: &ModelConfig,
    spec: &DataSpec,
    parameters: BTreeMap<String, TensorData>,
) -> Result<HfExport, String> {
    let labels = spec.classes().unwrap_or_default();
    let dims = |path: &str| parameters.get(path).map(|data| data.shape().to_vec());
    let mut preprocessor = None;
    let (family, config) = match model.kind.as_str() {
        "bert" => {
            let bert: BertConfig = model.settings()?;
            if bert.pooling == BertPooling::Mean {
                return Err("a bert model with pooling = \"mean\" has no Hugging Face class that reads it (BertForSequenceClassification classifies the pooled [CLS] vector); export it as a stoke artifact".into());
            }
            let vocab = dims("embeddings.word_embeddings.weight").map_or(0, |d| d[0]);
            let (id2label, label2id) = label_maps(&labels);
            let config = json!({
                "architectures": ["BertForSequenceClassification"],
                "model_type": "bert",
                "vocab_size": vocab,
                "hidden_size": bert.hidden(),
                "num_hidden_layers": bert.layers(),
                "num_attention_heads": bert.heads(),
                "intermediate_size": bert.intermediate(),
                "max_position_embeddings": bert.positions(),
                "type_vocab_size": bert.token_types(),
                "layer_norm_eps": bert.epsilon(),
                "hidden_act": "gelu",
                "hidden_dropout_prob": bert.dropout_prob(),
                "attention_probs_dropout_prob": bert.dropout_prob(),
                "position_embedding_type": "absolute",
                "pad_token_id": 0,
                "num_labels": labels.len(),
                "id2label": id2label,
                "label2id": label2id,
                "torch_dtype": "float32",
            });
            (Family::Bert, config)
        }
        "gpt2" => {
            let gpt2: Gpt2Config = model.settings()?;
            let vocab = dims("wte.weight").map_or(0, |d| d[0]);
            let positions = dims("wpe.weight").map_or(0, |d| d[0]);
            let config = json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "vocab_size": vocab,
                "n_positions": positions,
                "n_embd": gpt2.hidden(),
                "n_layer": gpt2.layers(),
                "n_head": gpt2.heads(),
                "n_inner": gpt2.intermediate(),
                "activation_function": "gelu_new",
                "layer_norm_epsilon": gpt2.epsilon(),
                "resid_pdrop": gpt2.dropout_prob(),
                "embd_pdrop": gpt2.dropout_prob(),
                "attn_pdrop": gpt2.dropout_prob(),
                "tie_word_embeddings": true,
                // GPT-2's end-of-text token where the vocabulary is GPT-2's, none otherwise
                // (transformers' default, 50256, would lie outside a smaller vocabulary).
                "bos_token_id": (vocab > 50256).then_some(50256),
                "eos_token_id": (vocab > 50256).then_some(50256),
                "torch_dtype": "float32",
            });
            (Family::Gpt2, config)
        }
        "timm-vit" | "timm-convnext" => {
            let (family, config, processor) = hf_vision::export_config(model, spec, labels.len())?;
            preprocessor = Some(processor);
            (family, config)
        }
        other => {
            return Err(format!(
                "--format hf writes bert, gpt2, timm-vit and timm-convnext models; this run's model is {other}"
            ));
        }
    };
    let tensors = names::export(family, parameters)?;
    let safetensors = serialize(&tensors)?;
    Ok(HfExport {
        config,
        safetensors,
        preprocessor,
    })
}

/// `tensors` as one safetensors file with PyTorch's metadata (transformers and timm refuse a
/// file without `format = "pt"`).
pub fn serialize(tensors: &[(String, TensorData)]) -> Result<Vec<u8>, String> {
    let views = tensors
        .iter()
        .map(|(name, data)| {
            let dtype = match data.dtype() {
                DType::I64 => safetensors::Dtype::I64,
                _ => safetensors::Dtype::F32,
            };
            let view =
                safetensors::tensor::TensorView::new(dtype, data.shape().to_vec(), data.as_bytes())
                    .map_err(|err| format!("{name}: {err}"))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize(views, Some(metadata)).map_err(|err| err.to_string())
}
