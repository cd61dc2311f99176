//! How Hugging Face names and lays out the parameters of the families stoke builds, as one
//! table per family read in both directions: importing a checkpoint and exporting one.
//!
//! burn-store's `PyTorchToBurnAdapter` transposes every 2-D weight of a `Linear`, which is
//! right for BERT's `nn.Linear` but silently wrong for GPT-2's `Conv1D` (already `[in, out]`,
//! and square for `c_proj`, so no shape check would notice), and it cannot split GPT-2's fused
//! `c_attn` into stoke's three projections. The layouts are therefore stated here per module.
//! The vision families' tables (transformers' ViT and ConvNeXt onto stoke's timm-named
//! models) are in `hf_vision.rs`.

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::TensorData;

use super::NamedTensor;
use super::hf_vision;

/// The families stoke reads from and writes to Hugging Face folders, by `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Bert,
    Gpt2,
    Vit,
    Convnext,
}

impl Family {
    pub const MODEL_TYPES: [&'static str; 4] = ["bert", "gpt2", "vit", "convnext"];

    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(Family::Bert),
            "gpt2" => Some(Family::Gpt2),
            "vit" => Some(Family::Vit),
            "convnext" => Some(Family::Convnext),
            _ => None,
        }
    }

    fn rules(self) -> &'static [Rule] {
        match self {
            Family::Bert => BERT,
            Family::Gpt2 => GPT2,
            Family::Vit => hf_vision::VIT,
            Family::Convnext => hf_vision::CONVNEXT,
        }
    }

    /// The prefix a task model puts before the base model's names (`BertFor…`, `GPT2LMHeadModel`).
    fn base_prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert.",
            Family::Gpt2 => "transformer.",
            Family::Vit => "vit.",
            Family::Convnext => "convnext.",
        }
    }

    /// Tensors a checkpoint may hold that stoke neither needs nor refuses: buffers (position
    /// ids, GPT-2's causal masks), the tied LM head, BERT's pretraining heads, and a ViT's
    /// pooler (which `ViTForImageClassification` does not use) and masked-image token.
    fn ignorable(self, name: &str) -> bool {
        let base = name.strip_prefix(self.base_prefix()).unwrap_or(name);
        match self {
            Family::Bert => name.ends_with("embeddings.position_ids") || name.starts_with("cls."),
            Family::Gpt2 => {
                name.ends_with(".attn.bias")
                    || name.ends_with(".attn.masked_bias")
                    || name == "lm_head.weight"
            }
            Family::Vit => base.starts_with("pooler.") || base == "embeddings.mask_token",
            Family::Convnext => false,
        }
    }

    /// Module paths (stoke's) that a new task may replace: the classification head, and BERT's
    /// pooler, which a base model saved without one lacks.
    pub fn head(self) -> &'static [&'static str] {
        match self {
            Family::Bert => &["classifier", "pooler"],
            Family::Gpt2 => &[],
            Family::Vit => &["head"],
            Family::Convnext => &["head.fc"],
        }
    }
}

/// How a Hugging Face module's parameters become stoke's.
#[derive(Debug, Clone, Copy)]
pub(super) enum Layout {
    /// `torch.nn.Linear`: weight `[out, in]`, burn's `[in, out]`.
    Linear,
    /// GPT-2's `Conv1D`: weight `[in, out]`, burn's layout already.
    Conv1d,
    /// GPT-2's `c_attn`: q, k and v side by side (`[in, 3·out]`), stoke's three projections.
    FusedQkv,
    /// `LayerNorm`: weight and bias are burn's gamma and beta.
    Norm,
    /// `Embedding`: the weight as it is.
    Embedding,
    /// `nn.Conv2d`: weight and bias as they are (burn's layout is PyTorch's).
    Conv2d,
    /// A bare `nn.Parameter` (a class token, a layer scale): the rule names the tensor itself,
    /// not a module.
    Parameter,
}

/// One module: its Hugging Face path and stoke's, each `{}` standing for an index (a layer,
/// a stage, a block), filled in order.
pub(super) struct Rule {
    hf: &'static str,
    stoke: &'static str,
    layout: Layout,
}

pub(super) const fn rule(hf: &'static str, stoke: &'static str, layout: Layout) -> Rule {
    Rule { hf, stoke, layout }
}

const BERT: &[Rule] = &[
    rule(
        "embeddings.word_embeddings",
        "embeddings.word_embeddings",
        Layout::Embedding,
    ),
    rule(
        "embeddings.position_embeddings",
        "embeddings.position_embeddings",
        Layout::Embedding,
    ),
    rule(
        "embeddings.token_type_embeddings",
        "embeddings.token_type_embeddings",
        Layout::Embedding,
    ),
    rule(
        "embeddings.LayerNorm",
        "embeddings.layer_norm",
        Layout::Norm,
    ),
    rule(
        "encoder.layer.{}.attention.self.query",
        "layers.{}.attention.query",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.attention.self.key",
        "layers.{}.attention.key",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.attention.self.value",
        "layers.{}.attention.value",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.attention.output.dense",
        "layers.{}.attention.output",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.attention.output.LayerNorm",
        "layers.{}.attention_norm",
        Layout::Norm,
    ),
    rule(
        "encoder.layer.{}.intermediate.dense",
        "layers.{}.feed_forward.linear_inner",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.output.dense",
        "layers.{}.feed_forward.linear_outer",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.output.LayerNorm",
        "layers.{}.output_norm",
        Layout::Norm,
    ),
    rule("pooler.dense", "pooler", Layout::Linear),
    rule("classifier", "classifier", Layout::Linear),
];

const GPT2: &[Rule] = &[
    rule("wte", "wte", Layout::Embedding),
    rule("wpe", "wpe", Layout::Embedding),
    rule("h.{}.ln_1", "blocks.{}.ln_1", Layout::Norm),
    rule("h.{}.attn.c_attn", "blocks.{}.attention", Layout::FusedQkv),
    rule(
        "h.{}.attn.c_proj",
        "blocks.{}.attention.output",
        Layout::Conv1d,
    ),
    rule("h.{}.ln_2", "blocks.{}.ln_2", Layout::Norm),
    rule(
        "h.{}.mlp.c_fc",
        "blocks.{}.mlp.linear_inner",
        Layout::Conv1d,
    ),
    rule(
        "h.{}.mlp.c_proj",
        "blocks.{}.mlp.linear_outer",
        Layout::Conv1d,
    ),
    rule("ln_f", "ln_f", Layout::Norm),
];

/// What a Hugging Face tensor is to stoke.
pub enum Imported {
    Tensors(Vec<NamedTensor>),
    /// A buffer or a head stoke has no use for (see `Family::ignorable`).
    Ignored,
    /// A name no rule knows.
    Unknown,
}

/// `name`'s tensor `data` (f32) under stoke's names and layout.
pub fn import(family: Family, name: &str, data: TensorData) -> Imported {
    if family.ignorable(name) {
        return Imported::Ignored;
    }
    let name = name.strip_prefix(family.base_prefix()).unwrap_or(name);
    let named = |path: String, data| NamedTensor { path, data };
    for rule in family.rules() {
        if let Layout::Parameter = rule.layout
            && let Some(indices) = matches(rule.hf, name)
        {
            return Imported::Tensors(vec![named(fill(rule.stoke, &indices), data)]);
        }
    }
    let Some((module, param)) = name.rsplit_once('.') else {
        return Imported::Unknown;
    };
    for rule in family.rules() {
        let Some(indices) = matches(rule.hf, module) else {
            continue;
        };
        let stoke = fill(rule.stoke, &indices);
        return Imported::Tensors(match (rule.layout, param) {
            (Layout::Parameter, _) => continue,
            (Layout::Linear, "weight") => vec![named(format!("{stoke}.weight"), transpose(data))],
            (Layout::Norm, "weight") => vec![named(format!("{stoke}.gamma"), data)],
            (Layout::Norm, "bias") => vec![named(format!("{stoke}.beta"), data)],
            (Layout::FusedQkv, param @ ("weight" | "bias")) => split_qkv(data)
                .into_iter()
                .zip(["query", "key", "value"])
                .map(|(part, projection)| named(format!("{stoke}.{projection}.{param}"), part))
                .collect(),
            (_, param @ ("weight" | "bias")) => vec![named(format!("{stoke}.{param}"), data)],
            _ => return Imported::Unknown,
        });
    }
    Imported::Unknown
}

const QKV: [&str; 3] = ["query", "key", "value"];

/// `module.query.param` (or `.key.`, `.value.`) of a fused `….qkv` module: (the fused
/// parameter's path, which part).
fn qkv_part(path: &str) -> Option<(String, usize)> {
    let (module, param) = path.rsplit_once('.')?;
    let (fused, part) = module.rsplit_once('.')?;
    let part = QKV.iter().position(|name| *name == part)?;
    (fused == "qkv" || fused.ends_with(".qkv")).then(|| (format!("{fused}.{param}"), part))
}

/// Separate query, key and value projections imported as `….qkv.query.weight` (and `.key.`,
/// `.value.`, burn's `[in, out]` layout) joined into the one projection a timm ViT has
/// (`….qkv.weight`, `[in, 3·out]`, q, k and v side by side).
pub fn fuse_qkv(tensors: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, String> {
    let mut parts: BTreeMap<String, [Option<TensorData>; 3]> = BTreeMap::new();
    let mut out = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        match qkv_part(&tensor.path) {
            Some((fused, part)) => parts.entry(fused).or_default()[part] = Some(tensor.data),
            None => out.push(tensor),
        }
    }
    for (path, [query, key, value]) in parts {
        let (Some(query), Some(key), Some(value)) = (query, key, value) else {
            return Err(format!(
                "{path}: the checkpoint lacks one of its query, key and value projections"
            ));
        };
        out.push(NamedTensor {
            path,
            data: join_qkv([query, key, value]),
        });
    }
    Ok(out)
}

/// stoke's parameters (path → f32 data) under Hugging Face's names and layout, for the task
/// model (`BertForSequenceClassification`, `GPT2LMHeadModel`, whose LM head is tied,
/// `ViTForImageClassification`, `ConvNextForImageClassification`).
pub fn export(
    family: Family,
    mut parameters: BTreeMap<String, TensorData>,
) -> Result<Vec<(String, TensorData)>, String> {
    // A fused `….qkv` projection goes out as transformers' three.
    let fused: Vec<String> = parameters
        .keys()
        .filter(|path| {
            path.rsplit_once('.')
                .is_some_and(|(module, _)| module == "qkv" || module.ends_with(".qkv"))
        })
        .cloned()
        .collect();
    for path in fused {
        let (module, param) = path.rsplit_once('.').expect("checked above");
        let data = parameters.remove(&path).expect("listed above");
        for (part, name) in split_qkv(data).into_iter().zip(QKV) {
            parameters.insert(format!("{module}.{name}.{param}"), part);
        }
    }
    // Every index tuple (layer; stage and block) each rule's stoke template takes here.
    let prefixes: BTreeSet<String> = parameters
        .keys()
        .flat_map(|path| {
            path.match_indices('.')
                .map(|(at, _)| path[..at].to_string())
                .chain([path.clone()])
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out = Vec::new();
    let mut take = |path: &str| {
        parameters
            .remove(path)
            .ok_or_else(|| format!("the model has no parameter {path}"))
    };
    for rule in family.rules() {
        let indices: BTreeSet<Vec<usize>> = match rule.stoke.contains("{}") {
            true => prefixes
                .iter()
                .filter_map(|prefix| matches(rule.stoke, prefix))
                .map(|found| found.iter().map(|i| i.parse().unwrap_or(0)).collect())
                .collect(),
            false => BTreeSet::from([Vec::new()]),
        };
        for index in indices {
            let index: Vec<String> = index.iter().map(usize::to_string).collect();
            let hf = fill(rule.hf, &index);
            // A classifier sits beside the base model, not in it.
            let hf = match rule.hf {
                "classifier" => hf,
                _ => format!("{}{hf}", family.base_prefix()),
            };
            let stoke = fill(rule.stoke, &index);
            match rule.layout {
                Layout::Linear => {
                    out.push((
                        format!("{hf}.weight"),
                        transpose(take(&format!("{stoke}.weight"))?),
                    ));
                    out.push((format!("{hf}.bias"), take(&format!("{stoke}.bias"))?));
                }
                Layout::Norm => {
                    out.push((format!("{hf}.weight"), take(&format!("{stoke}.gamma"))?));
                    out.push((format!("{hf}.bias"), take(&format!("{stoke}.beta"))?));
                }
                Layout::FusedQkv => {
                    for param in ["weight", "bias"] {
                        let parts =
                            QKV.map(|projection| take(&format!("{stoke}.{projection}.{param}")));
                        let [q, k, v] = parts;
                        out.push((format!("{hf}.{param}"), join_qkv([q?, k?, v?])));
                    }
                }
                Layout::Conv1d | Layout::Conv2d => {
                    out.push((format!("{hf}.weight"), take(&format!("{stoke}.weight"))?));
                    out.push((format!("{hf}.bias"), take(&format!("{stoke}.bias"))?));
                }
                Layout::Embedding => {
                    out.push((format!("{hf}.weight"), take(&format!("{stoke}.weight"))?));
                }
                Layout::Parameter => out.push((hf, take(&stoke)?)),
            }
        }
    }
    match parameters.keys().next() {
        Some(left) => Err(format!("no Hugging Face name for the parameter {left}")),
        None => Ok(out),
    }
}

/// The indices `template` (with `{}` for each) captures from `path`, in order, or `None`
/// when they do not match.
fn matches(template: &str, path: &str) -> Option<Vec<String>> {
    let (mut parts, mut indices) = (path.split('.'), Vec::new());
    for expected in template.split('.') {
        let part = parts.next()?;
        if expected == "{}" {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            indices.push(part.to_string());
        } else if expected != part {
            return None;
        }
    }
    parts.next().is_none().then_some(indices)
}

fn fill(template: &str, indices: &[String]) -> String {
    let mut filled = template.to_string();
    for index in indices {
        filled = filled.replacen("{}", index, 1);
    }
    filled
}

fn values(data: &TensorData) -> Vec<f32> {
    data.try_to_vec::<f32>()
        .expect("weights are converted to f32 when read")
}

/// A 2-D weight's transpose (`[a, b]` → `[b, a]`).
fn transpose(data: TensorData) -> TensorData {
    let [rows, cols] = [data.shape()[0], data.shape()[1]];
    let source = values(&data);
    let mut out = vec![0f32; rows * cols];
    for (r, row) in source.chunks_exact(cols).enumerate() {
        for (c, &value) in row.iter().enumerate() {
            out[c * rows + r] = value;
        }
    }
    TensorData::new(out, [cols, rows])
}

/// `c_attn`'s weight `[in, 3·out]` (or bias `[3·out]`) as q, k and v.
fn split_qkv(data: TensorData) -> Vec<TensorData> {
    let source = values(&data);
    match data.shape().len() {
        1 => source
            .chunks_exact(source.len() / 3)
            .map(|part| TensorData::new(part.to_vec(), [part.len()]))
            .collect(),
        _ => {
            let [rows, cols] = [data.shape()[0], data.shape()[1]];
            let width = cols / 3;
            (0..3)
                .map(|part| {
                    let values = source
                        .chunks_exact(cols)
                        .flat_map(|row| row[part * width..(part + 1) * width].iter().copied())
                        .collect::<Vec<f32>>();
                    TensorData::new(values, [rows, width])
                })
                .collect()
        }
    }
}

/// q, k and v back into `c_attn`'s layout.
fn join_qkv(parts: [TensorData; 3]) -> TensorData {
    let shape = parts[0].shape().to_vec();
    let parts = parts.map(|part| values(&part));
    match shape.len() {
        1 => TensorData::new(parts.concat(), [shape[0] * 3]),
        _ => {
            let [rows, width] = [shape[0], shape[1]];
            let mut out = Vec::with_capacity(rows * width * 3);
            for row in 0..rows {
                for part in &parts {
                    out.extend_from_slice(&part[row * width..(row + 1) * width]);
                }
            }
            TensorData::new(out, [rows, width * 3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_capture_the_layer_index() {
        assert_eq!(
            matches(
                "encoder.layer.{}.output.dense",
                "encoder.layer.11.output.dense"
            ),
            Some(vec!["11".to_string()])
        );
        assert_eq!(
            matches(
                "encoder.layer.{}.output.dense",
                "encoder.layer.x.output.dense"
            ),
            None
        );
        assert_eq!(matches("pooler.dense", "pooler.dense"), Some(vec![]));
        assert_eq!(
            matches(
                "encoder.stages.{}.layers.{}.dwconv",
                "encoder.stages.2.layers.13.dwconv"
            ),
            Some(vec!["2".to_string(), "13".to_string()])
        );
        assert_eq!(
            fill("stages.{}.blocks.{}.conv_dw", &["2".into(), "13".into()]),
            "stages.2.blocks.13.conv_dw"
        );
        assert_eq!(matches("pooler.dense", "pooler.dense.extra"), None);
    }

    #[test]
    fn fused_qkv_splits_and_joins_back() {
        let weight = TensorData::new((0..2 * 6).map(|v| v as f32).collect::<Vec<_>>(), [2, 6]);
        let parts = split_qkv(weight.clone());
        assert_eq!(values(&parts[1]), [2.0, 3.0, 8.0, 9.0]);
        let joined = join_qkv([parts[0].clone(), parts[1].clone(), parts[2].clone()]);
        assert_eq!(values(&joined), values(&weight));
    }

    #[test]
    fn linear_weights_are_transposed_and_gpt2_conv1d_weights_are_not() {
        let square = || TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]);
        let Imported::Tensors(bert) = import(Family::Bert, "bert.pooler.dense.weight", square())
        else {
            panic!("a BERT pooler weight");
        };
        assert_eq!(bert[0].path, "pooler.weight");
        assert_eq!(values(&bert[0].data), [1.0, 3.0, 2.0, 4.0]);
        let Imported::Tensors(gpt2) =
            import(Family::Gpt2, "transformer.h.0.attn.c_proj.weight", square())
        else {
            panic!("a GPT-2 projection weight");
        };
        assert_eq!(gpt2[0].path, "blocks.0.attention.output.weight");
        assert_eq!(values(&gpt2[0].data), [1.0, 2.0, 3.0, 4.0]);
        assert!(matches!(
            import(Family::Gpt2, "transformer.h.0.attn.bias", square()),
            Imported::Ignored
        ));
        assert!(matches!(
            import(
                Family::Bert,
                "bert.encoder.layer.0.crossattention.weight",
                square()
            ),
            Imported::Unknown
        ));
    }
}
