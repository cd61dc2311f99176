//! timm model folders: `config.json` (`architecture`, `num_classes`, `model_args` for a
//! network narrower or shallower than the named one, and `pretrained_cfg`: the preprocessing
//! the weights were trained with) beside `model.safetensors` under timm's names, which are
//! also torchvision's for ResNets.
//!
//! Reading fills the `[model]` keys a config leaves out from `architecture` and `model_args`
//! (refusing ones it contradicts), and the `[data.image]` keys it leaves out from
//! `pretrained_cfg` (saying so); the tensors keep timm's names but for batch norm's
//! `weight`/`bias` (burn's `gamma`/`beta`) and the projection shortcut (`downsample.0`/`.1`,
//! stoke's `downsample.conv`/`.norm`), and the head's weight is transposed (`nn.Linear`).

use std::path::{Path, PathBuf};

use burn::store::{ModuleStore, PytorchStore, SafetensorsStore, bridge};
use burn::tensor::{DType, TensorData};
use serde_json::Value;

use super::NamedTensor;
use super::hf::{CONFIG_FILE, WEIGHTS_FILE};
use crate::Error;
use crate::config::{
    ColorMode, DataConfig, DatasetKind, EfficientNetLiteConfig, Interpolation, ModelConfig,
    TimmConvnextConfig, TimmResnetConfig, TimmVitConfig,
};
use crate::model::{
    EfficientNetLite, Model, TimmConvnext, TimmResnet, TimmVit, efficientnet_lite, timm_convnext,
    timm_resnet, timm_vit,
};

/// A PyTorch state dict beside `config.json`, where no safetensors file is.
pub const PTH_FILE: &str = "model.pth";

/// True when `dir` holds a timm folder: a `config.json` naming an `architecture`.
pub fn is_timm_folder(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(CONFIG_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|config| config.get("architecture").is_some_and(Value::is_string))
}

/// A timm folder whose architecture stoke builds.
pub struct TimmFolder {
    pub dir: PathBuf,
    config: Value,
    architecture: String,
    family: Family,
}

/// The networks a folder's `architecture` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// timm's and torchvision's ResNets (`resnet50`).
    Resnet,
    /// EfficientNet-Lite as `efficientnet_lite_pytorch` names it (`efficientnet-lite0`).
    EfficientNetLite,
    /// timm's Vision Transformers (`vit_small_patch16_224`).
    Vit,
    /// timm's ConvNeXt (`convnext_tiny`).
    Convnext,
}

impl Family {
    pub(super) fn of(architecture: &str) -> Option<Self> {
        if timm_resnet::ARCHITECTURES
            .iter()
            .any(|(name, ..)| *name == architecture)
        {
            return Some(Family::Resnet);
        }
        if timm_vit::ARCHITECTURES
            .iter()
            .any(|(name, ..)| *name == architecture)
        {
            return Some(Family::Vit);
        }
        if timm_convnext::ARCHITECTURES
            .iter()
            .any(|(name, ..)| *name == architecture)
        {
            return Some(Family::Convnext);
        }
        let variant = architecture.strip_prefix("efficientnet-")?;
        efficientnet_lite::VARIANTS
            .iter()
            .any(|(name, ..)| *name == variant)
            .then_some(Family::EfficientNetLite)
    }

    fn known() -> Vec<String> {
        let resnets = timm_resnet::ARCHITECTURES
            .iter()
            .map(|(name, ..)| name.to_string());
        let vits = timm_vit::ARCHITECTURES
            .iter()
            .map(|(name, ..)| name.to_string());
        let convnexts = timm_convnext::ARCHITECTURES
            .iter()
            .map(|(name, ..)| name.to_string());
        let lites = efficientnet_lite::VARIANTS
            .iter()
            .map(|(name, ..)| format!("efficientnet-{name}"));
        resnets.chain(vits).chain(convnexts).chain(lites).collect()
    }

    fn kind(self) -> &'static str {
        match self {
            Family::Resnet => TimmResnet::KIND,
            Family::EfficientNetLite => EfficientNetLite::KIND,
            Family::Vit => TimmVit::KIND,
            Family::Convnext => TimmConvnext::KIND,
        }
    }

    /// timm's `nn.Sequential` children as stoke names them: a ResNet's shortcut is a
    /// convolution then a norm, a ConvNeXt's downsampling a norm then a convolution.
    pub(super) fn sequential(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Family::Resnet => &[
                (".downsample.0.", ".downsample.conv."),
                (".downsample.1.", ".downsample.norm."),
            ],
            Family::Convnext => &[
                ("stem.0.", "stem.conv."),
                ("stem.1.", "stem.norm."),
                (".downsample.0.", ".downsample.norm."),
                (".downsample.1.", ".downsample.conv."),
            ],
            Family::Vit | Family::EfficientNetLite => &[],
        }
    }
}

/// `model_args` stoke reads (timm's plain stem ignores `stem_width`, as stoke does); any
/// other changes the network in a way stoke does not build.
const MODEL_ARGS: [&str; 17] = [
    "depths",
    "dims",
    "embed_dim",
    "depth",
    "num_heads",
    "patch_size",
    "mlp_ratio",
    "img_size",
    "class_token",
    "layers",
    "channels",
    "stem_width",
    "num_classes",
    "in_chans",
    "global_pool",
    "width_coefficient",
    "depth_coefficient",
];

impl TimmFolder {
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let refuse = |detail: String| refusal(dir, detail);
        let config = super::hf::read_config(dir)?;
        let architecture = config
            .get("architecture")
            .and_then(Value::as_str)
            .ok_or_else(|| refuse(format!("{CONFIG_FILE} has no \"architecture\"")))?
            .to_string();
        let family = Family::of(&architecture).ok_or_else(|| {
            refuse(format!(
                "{CONFIG_FILE}: architecture \"{architecture}\" is not one stoke builds; it builds {}",
                Family::known().join(", ")
            ))
        })?;
        let folder = Self {
            dir: dir.to_path_buf(),
            config,
            architecture,
            family,
        };
        if let Some(args) = folder.config.get("model_args").and_then(Value::as_object)
            && let Some(other) = args.keys().find(|key| !MODEL_ARGS.contains(&key.as_str()))
        {
            return Err(folder.refuse(format!(
                "{CONFIG_FILE}: model_args.{other} is not supported; stoke reads {}",
                MODEL_ARGS.join(", ")
            )));
        }
        Ok(folder)
    }

    fn refuse(&self, detail: String) -> Error {
        refusal(&self.dir, detail)
    }

    fn model_arg(&self, key: &str) -> Option<&Value> {
        self.config.get("model_args")?.get(key)
    }

    fn sizes(&self, key: &str) -> Result<Option<Vec<usize>>, Error> {
        self.model_arg(key)
            .map(|value| {
                serde_json::from_value(value.clone()).map_err(|_| {
                    self.refuse(format!(
                        "{CONFIG_FILE}: model_args.{key} should be whole numbers, not {value}"
                    ))
                })
            })
            .transpose()
    }

    fn pretrained(&self, key: &str) -> Option<&Value> {
        self.config.get("pretrained_cfg")?.get(key)
    }

    /// Fills the `[model]` keys `model` leaves out and refuses ones that differ.
    pub fn shape(&self, model: &mut ModelConfig) -> Result<(), Error> {
        let kind = self.family.kind();
        if model.kind != kind {
            return Err(self.refuse(format!(
                "it holds a {}, but model.kind = \"{}\"; set model.kind = \"{kind}\"",
                self.architecture, model.kind
            )));
        }
        if self.family == Family::Vit {
            return self.vit_shape(model);
        }
        if self.family == Family::Convnext {
            let mut ours: TimmConvnextConfig = model.settings().map_err(|e| self.refuse(e))?;
            if ours.architecture != TimmConvnextConfig::default().architecture
                && ours.architecture != self.architecture
            {
                return Err(self.refuse(format!(
                    "the config names another shape: model.architecture = \"{}\" but {CONFIG_FILE} says \"{}\"; remove it to take the checkpoint's",
                    ours.architecture, self.architecture
                )));
            }
            ours.architecture = self.architecture.clone();
            ours.depths = ours.depths.or(self.sizes("depths")?);
            ours.dims = ours.dims.or(self.sizes("dims")?);
            *model = ModelConfig {
                settings: ModelConfig::of(kind, &ours).settings,
                ..model.clone()
            };
            return Ok(());
        }
        if self.family == Family::EfficientNetLite {
            let mut ours: EfficientNetLiteConfig = model.settings().map_err(|e| self.refuse(e))?;
            let variant = self.architecture.trim_start_matches("efficientnet-");
            if ours.variant != EfficientNetLiteConfig::default().variant && ours.variant != variant
            {
                return Err(self.refuse(format!(
                    "the config names another shape: model.variant = \"{}\" but {CONFIG_FILE} says \"{}\"; remove it to take the checkpoint's",
                    ours.variant, self.architecture
                )));
            }
            ours.variant = variant.to_string();
            for (key, value) in [
                ("width_coefficient", &mut ours.width_coefficient),
                ("depth_coefficient", &mut ours.depth_coefficient),
            ] {
                if value.is_none() {
                    *value = self.model_arg(key).and_then(Value::as_f64);
                }
            }
            *model = ModelConfig {
                settings: ModelConfig::of(kind, &ours).settings,
                ..model.clone()
            };
            return Ok(());
        }
        let mut ours: TimmResnetConfig = model.settings().map_err(|e| self.refuse(e))?;
        let mut conflicts = Vec::new();
        let defaults = TimmResnetConfig::default();
        match ours.architecture == defaults.architecture || ours.architecture == self.architecture {
            true => ours.architecture = self.architecture.clone(),
            false => conflicts.push(format!(
                "model.architecture = \"{}\" but {CONFIG_FILE} says \"{}\"",
                ours.architecture, self.architecture
            )),
        }
        let mut take = |key: &str, ours: &mut Option<Vec<usize>>, theirs: Option<Vec<usize>>| match (
            ours.as_ref(),
            theirs,
        ) {
            (Some(a), Some(b)) if *a != b => {
                conflicts.push(format!("model.{key} = {a:?} but {CONFIG_FILE} says {b:?}"))
            }
            (None, theirs) => *ours = theirs,
            _ => {}
        };
        take("layers", &mut ours.layers, self.sizes("layers")?);
        take("channels", &mut ours.channels, self.sizes("channels")?);
        if !conflicts.is_empty() {
            return Err(self.refuse(format!(
                "the config names another shape: {}; remove those keys to take the checkpoint's",
                conflicts.join(", ")
            )));
        }
        *model = ModelConfig {
            settings: ModelConfig::of(TimmResnet::KIND, &ours).settings,
            ..model.clone()
        };
        Ok(())
    }

    /// [`Self::shape`] for a ViT: width, depth, heads, patch side and MLP ratio.
    fn vit_shape(&self, model: &mut ModelConfig) -> Result<(), Error> {
        let mut ours: TimmVitConfig = model.settings().map_err(|e| self.refuse(e))?;
        if ours.architecture != TimmVitConfig::default().architecture
            && ours.architecture != self.architecture
        {
            return Err(self.refuse(format!(
                "the config names another shape: model.architecture = \"{}\" but {CONFIG_FILE} says \"{}\"; remove it to take the checkpoint's",
                ours.architecture, self.architecture
            )));
        }
        if let Some(pool) = self.model_arg("global_pool").and_then(Value::as_str)
            && pool != "token"
        {
            return Err(self.refuse(format!(
                "{CONFIG_FILE}: model_args.global_pool = \"{pool}\" is not supported; stoke's timm-vit classifies the class token"
            )));
        }
        ours.architecture = self.architecture.clone();
        let size = |key: &str| {
            self.model_arg(key)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
        };
        ours.embed_dim = ours.embed_dim.or(size("embed_dim"));
        ours.depth = ours.depth.or(size("depth"));
        ours.num_heads = ours.num_heads.or(size("num_heads"));
        ours.patch_size = ours.patch_size.or(size("patch_size"));
        ours.mlp_ratio = ours
            .mlp_ratio
            .or(self.model_arg("mlp_ratio").and_then(Value::as_f64));
        *model = ModelConfig {
            settings: ModelConfig::of(TimmVit::KIND, &ours).settings,
            ..model.clone()
        };
        Ok(())
    }

    /// The image size a ViT's learned positions were trained for.
    fn vit_image_size(&self) -> Option<[usize; 2]> {
        if let Some(size) = self.model_arg("img_size") {
            return match size {
                Value::Array(_) => serde_json::from_value(size.clone()).ok(),
                other => other.as_u64().map(|side| [side as usize; 2]),
            };
        }
        let input: Vec<usize> =
            serde_json::from_value(self.pretrained("input_size")?.clone()).ok()?;
        Some([*input.get(1)?, *input.get(2)?])
    }

    /// Fills the `[data.image]` keys `data` leaves out from `pretrained_cfg` (mean, std; for
    /// image folders crop_pct with its interpolation) and returns what it took, for the run
    /// to say. Images of another channel count than the network's stem are refused.
    pub fn preprocessing(&self, data: &mut DataConfig) -> Result<Vec<String>, Error> {
        let Some(image) = data.image.as_mut() else {
            return Ok(Vec::new());
        };
        let channels = self
            .model_arg("in_chans")
            .and_then(Value::as_u64)
            .unwrap_or(3) as usize;
        if image.color.channels() != channels {
            let wanted = match channels {
                1 => "\"grayscale\"",
                _ => "\"rgb\"",
            };
            return Err(self.refuse(format!(
                "its network takes images of {channels} channels, but data.image.color = {}; set data.image.color = {wanted}",
                match image.color {
                    ColorMode::Grayscale => "\"grayscale\"",
                    ColorMode::Rgb => "\"rgb\"",
                }
            )));
        }
        if self.family == Family::Vit
            && let Some(size) = self.vit_image_size()
            && image.size != size
        {
            return Err(self.refuse(format!(
                "its ViT learned positions for images of {}×{}; set data.image.size = [{}, {}]",
                size[0], size[1], size[0], size[1]
            )));
        }
        let floats = |key: &str| -> Option<Vec<f32>> {
            serde_json::from_value(self.pretrained(key)?.clone()).ok()
        };
        let mut taken = Vec::new();
        if image.mean.is_empty()
            && let (Some(mean), Some(std)) = (floats("mean"), floats("std"))
            && mean.len() == channels
            && std.len() == channels
        {
            taken.push(format!("mean {mean:?}, std {std:?}"));
            image.mean = mean;
            image.std = std;
        }
        if data.dataset == DatasetKind::ImageFolder
            && image.crop_pct.is_none()
            && let Some(crop_pct) = self.pretrained("crop_pct").and_then(Value::as_f64)
        {
            if !(crop_pct > 0.0 && crop_pct <= 1.0) {
                return Err(self.refuse(format!(
                    "{CONFIG_FILE}: pretrained_cfg.crop_pct = {crop_pct} is out of range (above 0, at most 1)"
                )));
            }
            image.crop_pct = Some(crop_pct);
            image.interpolation = match self.pretrained("interpolation").and_then(Value::as_str) {
                Some("bicubic") => Interpolation::Bicubic,
                _ => Interpolation::Bilinear,
            };
            taken.push(format!(
                "crop_pct {crop_pct}, {} interpolation",
                match image.interpolation {
                    Interpolation::Bicubic => "bicubic",
                    Interpolation::Bilinear => "bilinear",
                }
            ));
        }
        Ok(taken)
    }

    /// `model.safetensors`, or a PyTorch state dict `model.pth` (read by burn-store's
    /// PyTorch reader, which takes tensors out of the pickle and runs none of its code).
    pub fn weight_file(&self) -> Result<PathBuf, Error> {
        [WEIGHTS_FILE, PTH_FILE]
            .into_iter()
            .map(|file| self.dir.join(file))
            .find(|path| path.is_file())
            .ok_or_else(|| self.refuse(format!("it has no {WEIGHTS_FILE} (nor {PTH_FILE})")))
    }

    /// Every tensor under stoke's names and layout, in f32; batch norm's batch counters are
    /// left out and counted.
    pub fn tensors(&self) -> Result<(Vec<NamedTensor>, usize), Error> {
        let file = self.weight_file()?;
        let unreadable = |detail: String| self.refuse(format!("{}: {detail}", file.display()));
        let (mut pth, mut safetensors);
        let all = match file.extension().is_some_and(|ext| ext == "pth") {
            true => {
                pth = PytorchStore::from_file(&file);
                pth.get_all_tensors()
                    .map_err(|err| unreadable(err.to_string()))?
            }
            false => {
                safetensors = SafetensorsStore::from_file(&file);
                safetensors
                    .get_all_tensors()
                    .map_err(|err| unreadable(err.to_string()))?
            }
        };
        let mut tensors = Vec::new();
        let mut ignored = 0;
        for (name, tensor) in all {
            if name.ends_with(".num_batches_tracked") {
                ignored += 1;
                continue;
            }
            let data = bridge::to_data(tensor)
                .map_err(|err| unreadable(format!("tensor {name}: {err}")))?;
            let data = match data.dtype() {
                DType::F32 => data,
                _ => data.convert::<f32>(),
            };
            let (path, data) = import(self.family, name, data);
            tensors.push(NamedTensor { path, data });
        }
        Ok((tensors, ignored))
    }
}

fn refusal(dir: &Path, detail: String) -> Error {
    Error::Pretrained {
        from: dir.to_path_buf(),
        detail,
    }
}

/// True for a normalisation module (`bn1`, `norm`, `_bn0`, `downsample.norm`), whose
/// `weight` and `bias` are burn's `gamma` and `beta`.
pub(super) fn is_norm(module: &str) -> bool {
    module.rsplit('.').next().is_some_and(|last| {
        let last = last.trim_start_matches('_');
        last.starts_with("bn") || last.starts_with("norm")
    })
}

/// A timm tensor's stoke path and layout.
fn import(family: Family, name: &str, data: TensorData) -> (String, TensorData) {
    let path = family
        .sequential()
        .iter()
        .fold(name.to_string(), |path, (timm, stoke)| {
            match path.starts_with(timm) {
                true => path.replacen(timm, stoke, 1),
                false => path.replace(timm, stoke),
            }
        });
    let (module, param) = path.rsplit_once('.').unwrap_or(("", path.as_str()));
    match (is_norm(module), param) {
        (true, "weight") => (format!("{module}.gamma"), data),
        (true, "bias") => (format!("{module}.beta"), data),
        // Every `nn.Linear`: burn keeps its weight transposed.
        (false, "weight") if data.shape().len() == 2 => (path.clone(), transpose(data)),
        _ => (path.clone(), data),
    }
}

pub(super) fn transpose(data: TensorData) -> TensorData {
    let [rows, cols] = [data.shape()[0], data.shape()[1]];
    let values: Vec<f32> = data.try_to_vec().expect("f32 weights");
    let mut out = vec![0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    TensorData::new(out, [cols, rows])
}

#[cfg(test)]
mod tests {
    use super::super::timm_export::export_name;
    use super::*;

    #[test]
    fn names_go_both_ways() {
        for (timm, stoke) in [
            (
                "layer2.0.downsample.0.weight",
                "layer2.0.downsample.conv.weight",
            ),
            (
                "layer2.0.downsample.1.weight",
                "layer2.0.downsample.norm.gamma",
            ),
            ("layer1.1.bn2.bias", "layer1.1.bn2.beta"),
            ("bn1.running_var", "bn1.running_var"),
            ("layer3.0.conv3.weight", "layer3.0.conv3.weight"),
            ("_blocks.3._bn1.weight", "_blocks.3._bn1.gamma"),
            ("blocks.2.norm1.bias", "blocks.2.norm1.beta"),
            (
                "_blocks.3._depthwise_conv.weight",
                "_blocks.3._depthwise_conv.weight",
            ),
        ] {
            let data = TensorData::new(vec![0f32; 2], [2]);
            assert_eq!(import(Family::Resnet, timm, data.clone()).0, stoke);
            assert_eq!(export_name(Family::Resnet, stoke, data).0, timm);
        }
        let fc = TensorData::new(vec![1f32, 2., 3., 4., 5., 6.], [2, 3]);
        let (path, stoke) = import(Family::Resnet, "fc.weight", fc.clone());
        assert_eq!(
            (path.as_str(), stoke.shape().to_vec()),
            ("fc.weight", vec![3, 2])
        );
        assert_eq!(export_name(Family::Resnet, "fc.weight", stoke).1, fc);
    }
}
