//! `stoke export --format timm`: a `timm-resnet`, `timm-vit` or `timm-convnext` model as a
//! timm folder (`config.json` with `architecture`, `model_args` and `pretrained_cfg`, and
//! `model.safetensors` under timm's names) that `timm.create_model("local-dir:…")` loads with
//! the same logits. The inverse of `timm.rs`'s reading.

use std::collections::BTreeMap;

use burn::tensor::TensorData;
use serde_json::{Value, json};

use super::timm::{Family, is_norm, transpose};
use crate::config::{
    Interpolation, ModelConfig, TimmConvnextConfig, TimmResnetConfig, TimmVitConfig,
};
use crate::data::DataSpec;
use crate::model::{
    Model, TimmConvnext, TimmResnet, TimmVit, timm_convnext, timm_resnet, timm_vit,
};

/// timm's layer norms in ViT and ConvNeXt: a model read from transformers (ε 1e-12) has
/// another and no timm form.
const TIMM_EPSILON: f64 = 1e-6;

/// stoke's path and layout of a parameter as timm names it (the inverse of `timm::import`).
pub(super) fn export_name(family: Family, path: &str, data: TensorData) -> (String, TensorData) {
    // A norm is known by stoke's name (`stem.norm`), not timm's (`stem.1`).
    let norm = path
        .rsplit_once('.')
        .is_some_and(|(module, _)| is_norm(module));
    let name = family
        .sequential()
        .iter()
        .fold(path.to_string(), |name, (timm, stoke)| {
            match name.starts_with(stoke) {
                true => name.replacen(stoke, timm, 1),
                false => name.replace(stoke, timm),
            }
        });
    let (module, param) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
    match (norm, param) {
        (true, "gamma") => (format!("{module}.weight"), data),
        (true, "beta") => (format!("{module}.bias"), data),
        (false, "weight") if data.shape().len() == 2 => (name.clone(), transpose(data)),
        _ => (name.clone(), data),
    }
}

/// What `stoke export --format timm` writes: `config.json` and `model.safetensors`.
pub struct TimmExport {
    pub config: Value,
    pub safetensors: Vec<u8>,
}

/// A timm folder for a model with `parameters` (stoke path → f32 data) trained on `spec`'s
/// images: timm's names, batch counters at zero, the preprocessing and label names in
/// `pretrained_cfg`.
pub fn export(
    model: &ModelConfig,
    spec: &DataSpec,
    parameters: BTreeMap<String, TensorData>,
) -> Result<TimmExport, String> {
    let DataSpec::ImageClassification {
        input,
        classes,
        normalization,
        resize,
    } = spec
    else {
        return Err("--format timm writes image classifiers".into());
    };
    let (architecture, family, mut model_args, first_conv, classifier) = match model.kind.as_str() {
        TimmResnet::KIND => {
            let resnet: TimmResnetConfig = model.settings()?;
            let (_, _, default_layers) = timm_resnet::ARCHITECTURES
                .iter()
                .find(|(name, ..)| *name == resnet.architecture)
                .ok_or_else(|| timm_resnet::unknown_architecture(&resnet.architecture))?;
            let args = json!({
                "layers": resnet.layers.clone().unwrap_or(default_layers.to_vec()),
                "channels": resnet.channels.clone().unwrap_or_else(|| vec![64, 128, 256, 512]),
            });
            (resnet.architecture, Family::Resnet, args, "conv1", "fc")
        }
        TimmVit::KIND => {
            let vit: TimmVitConfig = model.settings()?;
            no_other_epsilon(vit.layer_norm_eps, "layer norm")?;
            let (width, depth, heads, patch, mlp) = timm_vit::shape(&vit)?;
            let args = json!({
                "embed_dim": width,
                "depth": depth,
                "num_heads": heads,
                "patch_size": patch,
                "mlp_ratio": mlp as f64 / width as f64,
                "img_size": [input.height, input.width],
            });
            (
                vit.architecture,
                Family::Vit,
                args,
                "patch_embed.proj",
                "head",
            )
        }
        TimmConvnext::KIND => {
            let convnext: TimmConvnextConfig = model.settings()?;
            no_other_epsilon(convnext.head_norm_eps, "head's layer norm")?;
            let (depths, dims) = timm_convnext::shape(&convnext)?;
            let args = json!({"depths": depths, "dims": dims});
            (
                convnext.architecture,
                Family::Convnext,
                args,
                "stem.0",
                "head.fc",
            )
        }
        other => {
            return Err(format!(
                "--format timm writes {}, {} and {} models; this run's model is {other}",
                TimmResnet::KIND,
                TimmVit::KIND,
                TimmConvnext::KIND
            ));
        }
    };
    model_args["in_chans"] = json!(input.channels);
    model_args["num_classes"] = json!(classes.len());
    let features = parameters
        .get(&format!("{classifier}.weight"))
        .map_or(0, |data| data.shape()[0]);
    let (crop_pct, interpolation) = match resize {
        Some(resize) => (resize.crop_pct, resize.interpolation),
        // Squashed images: the whole image, resized (timm has no squash; a crop_pct of 1 on
        // square images is the same).
        None => (1.0, Interpolation::Bilinear),
    };
    let interpolation = match interpolation {
        Interpolation::Bilinear => "bilinear",
        Interpolation::Bicubic => "bicubic",
    };
    let config = json!({
        "architecture": architecture,
        "num_classes": classes.len(),
        "num_features": features,
        "global_pool": if family == Family::Vit { "token" } else { "avg" },
        "label_names": classes,
        "model_args": model_args,
        "pretrained_cfg": {
            "input_size": [input.channels, input.height, input.width],
            "interpolation": interpolation,
            "crop_pct": crop_pct,
            "crop_mode": "center",
            "mean": normalization.mean,
            "std": normalization.std,
            "num_classes": classes.len(),
            "first_conv": first_conv,
            "classifier": classifier,
        },
    });
    let mut tensors: Vec<(String, TensorData)> = Vec::with_capacity(parameters.len());
    for (path, data) in parameters {
        if let Some(module) = path.strip_suffix(".running_mean") {
            let counter = format!("{module}.num_batches_tracked");
            let (name, _) = export_name(family, &counter, data.clone());
            tensors.push((name, TensorData::new(vec![0i64], [0usize; 0])));
        }
        tensors.push(export_name(family, &path, data));
    }
    Ok(TimmExport {
        config,
        safetensors: super::hf::serialize(&tensors)?,
    })
}

/// timm builds its layer norms with ε 1e-6 and takes no other from a folder.
fn no_other_epsilon(epsilon: Option<f64>, which: &str) -> Result<(), String> {
    match epsilon {
        Some(epsilon) if epsilon != TIMM_EPSILON => Err(format!(
            "this model's {which} ε is {epsilon:e} (as transformers builds it) and timm's is {TIMM_EPSILON:e}; export it with --format hf"
        )),
        _ => Ok(()),
    }
}
