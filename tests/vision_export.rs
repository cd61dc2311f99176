//! ViT and ConvNeXt fine-tuned from a timm or a transformers folder go back out as either:
//! `export --format timm` and `--format hf` write folders that stoke reads back with the run's
//! own logits, and that timm and transformers load with them too where they are installed
//! (scripts/timm_fixtures.py and scripts/hf_fixtures.py check-export). A form that cannot
//! hold the model (timm builds its layer norms with ε 1e-6 only, transformers' have 1e-12)
//! is refused in one line.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde_json::Value;

use common::optional::{self, TIMM, TRANSFORMERS};
use common::{repo, stoke};
use stoke::config::{BackendChoice, ModelConfig};
use stoke::data::Input;

/// The fixtures' seeded input batch (2 RGB images of 32×32).
fn fixture_input(fixture: &Path) -> Vec<f32> {
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(fixture.join("expected.json")).unwrap()).unwrap();
    serde_json::from_value(expected["input"].clone()).unwrap()
}

fn logits(model: &dyn stoke::train::Net, input: &[f32]) -> Vec<f32> {
    let images = Tensor::<4>::from_data(
        TensorData::new(input.to_vec(), [2, 3, 32, 32]),
        &Device::flex(),
    );
    model
        .scores(Input::Images(images))
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap()
}

/// A two-step fine-tuning run of `kind` from the folder `from` on two classes of photos.
fn fine_tune(dir: &Path, name: &str, kind: &str, from: &Path) -> PathBuf {
    let data = dir.join("photos");
    if !data.exists() {
        common::write_photo_folder(&data, 3);
    }
    let config = format!(
        r#"[run]
seed = 7
backend = "flex"

[data]
dataset = "image-folder"
path = "{data}"
workers = 1

[data.image]
size = [32, 32]
color = "rgb"

[data.augment]
hflip = 0.5

[model]
kind = "{kind}"
init_from = "{from}"

[train]
batch_size = 4
max_steps = 2
eval_every = 2
progress = "plain"

[optimizer]
kind = "adamw"
lr = 0.001
"#,
        data = data.display(),
        from = from.display()
    );
    let path = dir.join(format!("{name}.toml"));
    fs::write(&path, config).unwrap();
    let run = dir.join(name);
    common::train(path.to_str().unwrap(), &[], &run);
    run
}

fn default_config(kind: &str) -> ModelConfig {
    match kind {
        "timm-vit" => ModelConfig::of(kind, &stoke::config::TimmVitConfig::default()),
        _ => ModelConfig::of(kind, &stoke::config::TimmConvnextConfig::default()),
    }
}

/// `stoke export RUN --format FORMAT --out OUT`.
fn export(run: &Path, format: &str, out: &Path) -> std::process::Output {
    stoke()
        .args(["export"])
        .arg(run)
        .arg("--out")
        .arg(out)
        .args(["--format", format])
        .output()
        .unwrap()
}

/// Exports `run` as `format`, reads the folder back into a model of `kind` as `init_from`
/// does and compares its logits with the run's; then lets the source library load it.
fn round_trip(run: &Path, kind: &str, format: &str, fixture: &Path) {
    let out = run.with_extension(format!("{format}-export"));
    let output = export(run, format, &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let input = fixture_input(fixture);
    let loaded =
        stoke::export::open(run, &"best".parse().unwrap(), Some(BackendChoice::Flex)).unwrap();
    let ours = logits(loaded.model.as_ref(), &input);
    let mut config = stoke::config::ExperimentConfig {
        model: ModelConfig {
            init_from: Some(out.clone()),
            ..default_config(kind)
        },
        ..Default::default()
    };
    stoke::train::resolve(&mut config).unwrap();
    let mut reread = common::build(&config.model, &loaded.spec);
    stoke::train::initial_weights(reread.as_mut(), &config.model, &loaded.spec).unwrap();
    assert_eq!(
        ours,
        logits(reread.as_ref(), &input),
        "{}: the exported folder reads back with other logits",
        out.display()
    );
    let rows: Vec<Vec<f32>> = ours.chunks(ours.len() / 2).map(<[f32]>::to_vec).collect();
    fs::write(
        out.join("stoke_logits.json"),
        serde_json::to_string(&rows).unwrap(),
    )
    .unwrap();
    let (library, script) = match format {
        "timm" => (&TIMM, "scripts/timm_fixtures.py"),
        _ => (&TRANSFORMERS, "scripts/hf_fixtures.py"),
    };
    if optional::available(library) {
        common::python_check(script, &[Path::new("check-export"), &out, fixture]);
    }
}

#[test]
fn vits_and_convnexts_export_to_timm_and_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = repo().join("tests/fixtures");
    for (kind, source, name) in [
        ("timm-vit", "timm", "vit-tiny"),
        ("timm-convnext", "timm", "convnext-tiny"),
        ("timm-vit", "hf", "vit-tiny"),
        ("timm-convnext", "hf", "convnext-tiny"),
    ] {
        let fixture = fixtures.join(source).join(name);
        let run = fine_tune(dir.path(), &format!("{source}-{name}"), kind, &fixture);
        round_trip(&run, kind, "hf", &fixture);
        if source == "hf" {
            // transformers' layer norms (a ViT's, a ConvNeXt's head) have ε 1e-12; timm's
            // cannot be told another.
            let output = export(&run, "timm", &dir.path().join("refused"));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{stderr}");
            assert!(
                stderr.contains("layer norm ε is 1e-12") && stderr.contains("--format hf"),
                "{stderr}"
            );
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(!dir.path().join("refused").exists());
        } else {
            round_trip(&run, kind, "timm", &fixture);
        }
    }
}
