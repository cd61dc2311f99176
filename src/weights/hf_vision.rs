//! transformers' vision folders: `ViTForImageClassification` (or a bare `ViTModel`) and
//! `ConvNextForImageClassification`, read into and written from stoke's `timm-vit` and
//! `timm-convnext`, which compute what transformers' classes compute and keep timm's names.
//!
//! It owns the two families' name tables (read by `names.rs` in both directions), what their
//! `config.json` says about the network's shape, what their `preprocessor_config.json` says
//! about the images (mean, std, and for ConvNeXt the crop and interpolation), and the config
//! files an export writes so that `AutoModelForImageClassification` and `AutoImageProcessor`
//! load the folder back.

use serde_json::{Value, json};

use super::hf::{CONFIG_FILE, HfFolder, label_maps};
use super::names::{Family, Layout, Rule, rule};
use crate::Error;
use crate::config::{
    DataConfig, DatasetKind, Interpolation, ModelConfig, TimmConvnextConfig, TimmVitConfig,
};
use crate::data::DataSpec;
use crate::model::{Model, TimmConvnext, TimmVit, timm_convnext, timm_vit};

/// The image processor's settings beside the model's.
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

/// transformers' ViT (after its `vit.` prefix) onto stoke's timm-named ViT. The query, key
/// and value projections land as `qkv.query` etc. and are fused by `names::fuse_qkv`.
pub(super) const VIT: &[Rule] = &[
    rule("embeddings.cls_token", "cls_token", Layout::Parameter),
    rule(
        "embeddings.position_embeddings",
        "pos_embed",
        Layout::Parameter,
    ),
    rule(
        "embeddings.patch_embeddings.projection",
        "patch_embed.proj",
        Layout::Conv2d,
    ),
    rule(
        "encoder.layer.{}.layernorm_before",
        "blocks.{}.norm1",
        Layout::Norm,
    ),
    rule(
        "encoder.layer.{}.attention.attention.query",
        "blocks.{}.attn.qkv.query",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.attention.attention.key",
        "blocks.{}.attn.qkv.key",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.attention.attention.value",
        "blocks.{}.attn.qkv.value",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.attention.output.dense",
        "blocks.{}.attn.proj",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.layernorm_after",
        "blocks.{}.norm2",
        Layout::Norm,
    ),
    rule(
        "encoder.layer.{}.intermediate.dense",
        "blocks.{}.mlp.fc1",
        Layout::Linear,
    ),
    rule(
        "encoder.layer.{}.output.dense",
        "blocks.{}.mlp.fc2",
        Layout::Linear,
    ),
    rule("layernorm", "norm", Layout::Norm),
    rule("classifier", "head", Layout::Linear),
];

/// transformers' ConvNeXt (after its `convnext.` prefix) onto stoke's timm-named ConvNeXt.
pub(super) const CONVNEXT: &[Rule] = &[
    rule("embeddings.patch_embeddings", "stem.conv", Layout::Conv2d),
    rule("embeddings.layernorm", "stem.norm", Layout::Norm),
    rule(
        "encoder.stages.{}.downsampling_layer.0",
        "stages.{}.downsample.norm",
        Layout::Norm,
    ),
    rule(
        "encoder.stages.{}.downsampling_layer.1",
        "stages.{}.downsample.conv",
        Layout::Conv2d,
    ),
    rule(
        "encoder.stages.{}.layers.{}.dwconv",
        "stages.{}.blocks.{}.conv_dw",
        Layout::Conv2d,
    ),
    rule(
        "encoder.stages.{}.layers.{}.layernorm",
        "stages.{}.blocks.{}.norm",
        Layout::Norm,
    ),
    rule(
        "encoder.stages.{}.layers.{}.pwconv1",
        "stages.{}.blocks.{}.mlp.fc1",
        Layout::Linear,
    ),
    rule(
        "encoder.stages.{}.layers.{}.pwconv2",
        "stages.{}.blocks.{}.mlp.fc2",
        Layout::Linear,
    ),
    rule(
        "encoder.stages.{}.layers.{}.layer_scale_parameter",
        "stages.{}.blocks.{}.gamma",
        Layout::Parameter,
    ),
    rule("layernorm", "head.norm", Layout::Norm),
    rule("classifier", "head.fc", Layout::Linear),
];

/// transformers' defaults where a `config.json` leaves a key out.
const VIT_EPSILON: f64 = 1e-12;
const CONVNEXT_EPSILON: f64 = 1e-12;

/// What stoke's blocks compute must be what the checkpoint was trained with.
pub(super) fn check_architecture(folder: &HfFolder) -> Result<(), Error> {
    let act = folder.text("hidden_act").unwrap_or("gelu");
    if act != "gelu" {
        return Err(folder.refuse(format!(
            "{CONFIG_FILE}: hidden_act = \"{act}\" is not supported; stoke's {} uses gelu",
            folder.kind()
        )));
    }
    let unsupported = |key: &str, value: &Value, wanted: &str| {
        folder.refuse(format!(
            "{CONFIG_FILE}: {key} = {value} is not supported; stoke's {} needs {wanted}",
            folder.kind()
        ))
    };
    match folder.family {
        Family::Vit => {
            if let Some(value) = folder.value("qkv_bias")
                && value != &Value::Bool(true)
            {
                return Err(unsupported("qkv_bias", value, "true"));
            }
        }
        _ => {
            for (key, wanted) in [("num_stages", 4.0), ("patch_size", 4.0)] {
                if let Some(value) = folder.value(key)
                    && value.as_f64() != Some(wanted)
                {
                    return Err(unsupported(key, value, &wanted.to_string()));
                }
            }
            if let Some(value) = folder.value("layer_scale_init_value")
                && value.as_f64().is_none_or(|scale| scale <= 0.0)
            {
                return Err(unsupported(
                    "layer_scale_init_value",
                    value,
                    "a layer scale above 0",
                ));
            }
        }
    }
    Ok(())
}

/// Fills the `[model]` keys a `timm-vit` or `timm-convnext` config leaves out from
/// `config.json`; `conflicts` collects the ones it contradicts.
pub(super) fn shape(
    folder: &HfFolder,
    model: &mut ModelConfig,
    conflicts: &mut Vec<String>,
) -> Result<(), Error> {
    let mut take =
        |key: &str, ours: &mut Option<usize>, theirs: Option<usize>| match (*ours, theirs) {
            (Some(a), Some(b)) if a != b => {
                conflicts.push(format!("model.{key} = {a} but {CONFIG_FILE} says {b}"))
            }
            (None, theirs) => *ours = theirs,
            _ => {}
        };
    if folder.family == Family::Vit {
        let mut vit: TimmVitConfig = model.settings().map_err(|e| folder.refuse(e))?;
        let width = folder.size("hidden_size")?;
        take("embed_dim", &mut vit.embed_dim, width);
        take("depth", &mut vit.depth, folder.size("num_hidden_layers")?);
        let heads = folder.size("num_attention_heads")?;
        take("num_heads", &mut vit.num_heads, heads);
        take(
            "patch_size",
            &mut vit.patch_size,
            folder.size("patch_size")?,
        );
        if let (Some(width), Some(hidden)) = (width, folder.size("intermediate_size")?) {
            vit.mlp_ratio = vit.mlp_ratio.or(Some(hidden as f64 / width as f64));
        }
        vit.layer_norm_eps = vit
            .layer_norm_eps
            .or(Some(folder.number("layer_norm_eps").unwrap_or(VIT_EPSILON)));
        // The name only sets defaults, all of which the folder gave: the one of this width.
        if let Some((name, ..)) = timm_vit::ARCHITECTURES.iter().find(|(_, w, d, h, p)| {
            Some(*w) == vit.embed_dim
                && Some(*d) == vit.depth
                && Some(*h) == vit.num_heads
                && Some(*p) == vit.patch_size
        }) {
            vit.architecture = name.to_string();
        }
        *model = ModelConfig {
            settings: ModelConfig::of(TimmVit::KIND, &vit).settings,
            ..model.clone()
        };
        return Ok(());
    }
    let mut convnext: TimmConvnextConfig = model.settings().map_err(|e| folder.refuse(e))?;
    let sizes = |key: &str| -> Result<Option<Vec<usize>>, Error> {
        folder
            .value(key)
            .map(|value| {
                serde_json::from_value(value.clone()).map_err(|_| {
                    folder.refuse(format!(
                        "{CONFIG_FILE}: \"{key}\" should be whole numbers, not {value}"
                    ))
                })
            })
            .transpose()
    };
    for (key, ours, theirs) in [
        ("depths", &mut convnext.depths, sizes("depths")?),
        ("dims", &mut convnext.dims, sizes("hidden_sizes")?),
    ] {
        match (ours.as_ref(), theirs) {
            (Some(a), Some(b)) if *a != b => {
                conflicts.push(format!("model.{key} = {a:?} but {CONFIG_FILE} says {b:?}"))
            }
            (None, theirs) => *ours = theirs,
            _ => {}
        }
    }
    convnext.head_norm_eps = convnext.head_norm_eps.or(Some(
        folder.number("layer_norm_eps").unwrap_or(CONVNEXT_EPSILON),
    ));
    if let Some((name, ..)) = timm_convnext::ARCHITECTURES
        .iter()
        .find(|(_, depths, dims)| {
            convnext.depths.as_deref() == Some(depths) && convnext.dims.as_deref() == Some(dims)
        })
    {
        convnext.architecture = name.to_string();
    }
    *model = ModelConfig {
        settings: ModelConfig::of(TimmConvnext::KIND, &convnext).settings,
        ..model.clone()
    };
    Ok(())
}

/// Fills the `[data.image]` keys `data` leaves out from the folder's
/// `preprocessor_config.json` (mean and std; for a ConvNeXt on image folders the crop and
/// interpolation) and returns what it took, for the run to say. A ViT refuses images of
/// another size than its learned positions', and both refuse another channel count.
pub fn preprocessing(folder: &HfFolder, data: &mut DataConfig) -> Result<Vec<String>, Error> {
    let Some(image) = data.image.as_mut() else {
        return Ok(Vec::new());
    };
    let channels = folder.size("num_channels")?.unwrap_or(3);
    if image.color.channels() != channels {
        return Err(folder.refuse(format!(
            "its network takes images of {channels} channels, but data.image.color has {}; set data.image.color = \"{}\"",
            image.color.channels(),
            if channels == 1 { "grayscale" } else { "rgb" }
        )));
    }
    if folder.family == Family::Vit {
        let side = folder.size("image_size")?.unwrap_or(224);
        if image.size != [side, side] {
            return Err(folder.refuse(format!(
                "its ViT learned positions for images of {side}×{side}; set data.image.size = [{side}, {side}]"
            )));
        }
    }
    let path = folder.dir.join(PREPROCESSOR_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    let processor: Value = serde_json::from_str(&text)
        .map_err(|err| folder.refuse(format!("{PREPROCESSOR_FILE} is not valid JSON: {err}")))?;
    let floats = |key: &str| -> Option<Vec<f32>> {
        serde_json::from_value(processor.get(key)?.clone()).ok()
    };
    let mut taken = Vec::new();
    if image.mean.is_empty()
        && let (Some(mean), Some(std)) = (floats("image_mean"), floats("image_std"))
        && mean.len() == channels
        && std.len() == channels
    {
        taken.push(format!("mean {mean:?}, std {std:?}"));
        image.mean = mean;
        image.std = std;
    }
    // ConvNextImageProcessor: below 384 pixels, the shorter side resized to
    // shortest_edge / crop_pct and the centre cropped (timm's evaluation transform).
    let shortest = processor
        .get("size")
        .and_then(|size| size.get("shortest_edge"))
        .and_then(Value::as_u64);
    if data.dataset == DatasetKind::ImageFolder
        && image.crop_pct.is_none()
        && let Some(crop_pct) = processor.get("crop_pct").and_then(Value::as_f64)
        && shortest.is_some_and(|edge| edge < 384)
    {
        if !(crop_pct > 0.0 && crop_pct <= 1.0) {
            return Err(folder.refuse(format!(
                "{PREPROCESSOR_FILE}: crop_pct = {crop_pct} is out of range (above 0, at most 1)"
            )));
        }
        image.crop_pct = Some(crop_pct);
        image.interpolation = match processor.get("resample").and_then(Value::as_u64) {
            Some(3) => Interpolation::Bicubic,
            _ => Interpolation::Bilinear,
        };
        taken.push(format!(
            "crop_pct {crop_pct}, {} interpolation",
            interpolation_name(image.interpolation)
        ));
    }
    Ok(taken)
}

fn interpolation_name(interpolation: Interpolation) -> &'static str {
    match interpolation {
        Interpolation::Bilinear => "bilinear",
        Interpolation::Bicubic => "bicubic",
    }
}

/// `config.json` and `preprocessor_config.json` of a `timm-vit` or `timm-convnext` model
/// trained on `spec`'s images, as `ViTForImageClassification` and
/// `ConvNextForImageClassification` folders have them.
pub(super) fn export_config(
    model: &ModelConfig,
    spec: &DataSpec,
    head_rows: usize,
) -> Result<(Family, Value, Value), String> {
    let DataSpec::ImageClassification {
        input,
        classes,
        normalization,
        resize,
    } = spec
    else {
        return Err(format!(
            "--format hf writes {} models trained on images",
            model.kind
        ));
    };
    let (id2label, label2id) = label_maps(classes);
    let (family, config) = match model.kind.as_str() {
        TimmVit::KIND => {
            let vit: TimmVitConfig = model.settings()?;
            let (width, depth, heads, patch, mlp) = timm_vit::shape(&vit)?;
            if input.height != input.width {
                return Err(format!(
                    "transformers' ViT takes square images; this one takes {}×{}",
                    input.height, input.width
                ));
            }
            let config = json!({
                "architectures": ["ViTForImageClassification"],
                "model_type": "vit",
                "hidden_size": width,
                "num_hidden_layers": depth,
                "num_attention_heads": heads,
                "intermediate_size": mlp,
                "hidden_act": "gelu",
                "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0,
                "layer_norm_eps": vit.layer_norm_eps.unwrap_or(1e-6),
                "image_size": input.height,
                "patch_size": patch,
                "num_channels": input.channels,
                "qkv_bias": true,
                "num_labels": head_rows,
                "id2label": id2label,
                "label2id": label2id,
                "torch_dtype": "float32",
            });
            (Family::Vit, config)
        }
        TimmConvnext::KIND => {
            let convnext: TimmConvnextConfig = model.settings()?;
            let (depths, dims) = timm_convnext::shape(&convnext)?;
            let config = json!({
                "architectures": ["ConvNextForImageClassification"],
                "model_type": "convnext",
                "depths": depths,
                "hidden_sizes": dims,
                "num_stages": 4,
                "patch_size": 4,
                "num_channels": input.channels,
                "hidden_act": "gelu",
                "layer_norm_eps": convnext.head_norm_eps.unwrap_or(1e-6),
                "layer_scale_init_value": 1e-6,
                "drop_path_rate": 0.0,
                "image_size": input.height,
                "num_labels": head_rows,
                "id2label": id2label,
                "label2id": label2id,
                "torch_dtype": "float32",
            });
            (Family::Convnext, config)
        }
        other => return Err(format!("{other} is not a vision model transformers builds")),
    };
    // Photos kept at their aspect crop the centre as ConvNextImageProcessor does for square
    // inputs below 384 pixels; otherwise images are squashed, as ViTImageProcessor does.
    let processor = match resize {
        Some(resize) if input.height == input.width && input.height < 384 => json!({
            "image_processor_type": "ConvNextImageProcessor",
            "do_resize": true,
            "size": {"shortest_edge": input.height},
            "crop_pct": resize.crop_pct,
            "resample": resample_code(resize.interpolation),
            "do_rescale": true,
            "rescale_factor": 1.0 / 255.0,
            "do_normalize": true,
            "image_mean": normalization.mean,
            "image_std": normalization.std,
        }),
        _ => json!({
            "image_processor_type": "ViTImageProcessor",
            "do_resize": true,
            "size": {"height": input.height, "width": input.width},
            "resample": resample_code(Interpolation::Bilinear),
            "do_rescale": true,
            "rescale_factor": 1.0 / 255.0,
            "do_normalize": true,
            "image_mean": normalization.mean,
            "image_std": normalization.std,
        }),
    };
    Ok((family, config, processor))
}

/// Pillow's resampling codes, as image processors store them.
fn resample_code(interpolation: Interpolation) -> u8 {
    match interpolation {
        Interpolation::Bilinear => 2,
        Interpolation::Bicubic => 3,
    }
}
