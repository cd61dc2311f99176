//! How Hugging Face names and lays out the parameters of the families stoke builds, as one
//! table per family read in both directions: importing a checkpoint and exporting one.
//!
//! burn-store's `PyTorchToBurnAdapter` transposes every 2-D weight of a `Linear`, which is
//! right for BERT's `nn.Linear` but silently wrong for GPT-2's `Conv1D` (already `[in, out]`,
//! and square for `c_proj`, so no shape check would notice), and it cannot split GPT-2's fused
//! `c_attn` into stoke's three projections. The layouts are therefore stated here per module.

use burn::tensor::TensorData;

use super::NamedTensor;

/// The families stoke reads from and writes to Hugging Face folders, by `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Bert,
    Gpt2,
}

impl Family {
    pub const MODEL_TYPES: [&'static str; 2] = ["bert", "gpt2"];

    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(Family::Bert),
            "gpt2" => Some(Family::Gpt2),
            _ => None,
        }
    }

    fn rules(self) -> &'static [Rule] {
        match self {
            Family::Bert => BERT,
            Family::Gpt2 => GPT2,
        }
    }

    /// The prefix a task model puts before the base model's names (`BertFor…`, `GPT2LMHeadModel`).
    fn base_prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert.",
            Family::Gpt2 => "transformer.",
        }
    }

    /// Tensors a checkpoint may hold that stoke neither needs nor refuses: buffers (position
    /// ids, GPT-2's causal masks), the tied LM head, and BERT's pretraining heads.
    fn ignorable(self, name: &str) -> bool {
        match self {
            Family::Bert => name.ends_with("embeddings.position_ids") || name.starts_with("cls."),
            Family::Gpt2 => {
                name.ends_with(".attn.bias")
                    || name.ends_with(".attn.masked_bias")
                    || name == "lm_head.weight"
            }
        }
    }

    /// Module paths (stoke's) that a new task may replace: the classification head, and BERT's
    /// pooler, which a base model saved without one lacks.
    pub fn head(self) -> &'static [&'static str] {
        match self {
            Family::Bert => &["classifier", "pooler"],
            Family::Gpt2 => &[],
        }
    }
}

/// How a Hugging Face module's parameters become stoke's.
#[derive(Debug, Clone, Copy)]
enum Layout {
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
}

/// One module: its Hugging Face path and stoke's, `{}` standing for a layer index.
struct Rule {
    hf: &'static str,
    stoke: &'static str,
    layout: Layout,
}

const fn rule(hf: &'static str, stoke: &'static str, layout: Layout) -> Rule {
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
    let Some((module, param)) = name.rsplit_once('.') else {
        return Imported::Unknown;
    };
    for rule in family.rules() {
        let Some(index) = matches(rule.hf, module) else {
            continue;
        };
        let stoke = fill(rule.stoke, index.as_deref());
        let named = |path: String, data| NamedTensor { path, data };
        return Imported::Tensors(match (rule.layout, param) {
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

/// stoke's parameters (path → f32 data) under Hugging Face's names and layout, for the task
/// model (`BertForSequenceClassification`, `GPT2LMHeadModel`, whose LM head is tied).
pub fn export(
    family: Family,
    mut parameters: std::collections::BTreeMap<String, TensorData>,
) -> Result<Vec<(String, TensorData)>, String> {
    let layers = |prefix: &str| {
        parameters
            .keys()
            .filter_map(|path| {
                path.strip_prefix(prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |last| last + 1)
    };
    let count = match family {
        Family::Bert => layers("layers."),
        Family::Gpt2 => layers("blocks."),
    };
    let mut out = Vec::new();
    let mut take = |path: &str| {
        parameters
            .remove(path)
            .ok_or_else(|| format!("the model has no parameter {path}"))
    };
    for rule in family.rules() {
        let indices: Vec<Option<String>> = match rule.hf.contains("{}") {
            true => (0..count).map(|i| Some(i.to_string())).collect(),
            false => vec![None],
        };
        for index in indices {
            let hf = fill(rule.hf, index.as_deref());
            let hf = match (family, rule.stoke) {
                (Family::Bert, "classifier") => hf,
                _ => format!("{}{hf}", family.base_prefix()),
            };
            let stoke = fill(rule.stoke, index.as_deref());
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
                        let parts = ["query", "key", "value"]
                            .map(|projection| take(&format!("{stoke}.{projection}.{param}")));
                        let [q, k, v] = parts;
                        out.push((format!("{hf}.{param}"), join_qkv([q?, k?, v?])));
                    }
                }
                Layout::Conv1d => {
                    out.push((format!("{hf}.weight"), take(&format!("{stoke}.weight"))?));
                    out.push((format!("{hf}.bias"), take(&format!("{stoke}.bias"))?));
                }
                Layout::Embedding => {
                    out.push((format!("{hf}.weight"), take(&format!("{stoke}.weight"))?));
                }
            }
        }
    }
    match parameters.keys().next() {
        Some(left) => Err(format!("no Hugging Face name for the parameter {left}")),
        None => Ok(out),
    }
}

/// The layer index `template` (with `{}` for it) captures from `path`, `Some(None)` for a
/// template without one, `None` when they do not match.
fn matches(template: &str, path: &str) -> Option<Option<String>> {
    let (mut parts, mut index) = (path.split('.'), None);
    for expected in template.split('.') {
        let part = parts.next()?;
        if expected == "{}" {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            index = Some(part.to_string());
        } else if expected != part {
            return None;
        }
    }
    parts.next().is_none().then_some(index)
}

fn fill(template: &str, index: Option<&str>) -> String {
    match index {
        Some(index) => template.replace("{}", index),
        None => template.to_string(),
    }
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
            Some(Some("11".into()))
        );
        assert_eq!(
            matches(
                "encoder.layer.{}.output.dense",
                "encoder.layer.x.output.dense"
            ),
            None
        );
        assert_eq!(matches("pooler.dense", "pooler.dense"), Some(None));
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
