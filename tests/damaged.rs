//! No damaged input crashes stoke. A photo folder holding a JPEG with a bogus marker in its
//! data, one cut in half and one cut to its first 300 bytes: training refuses it naming the
//! file (exit 2), or skips and counts them with `data.on_error = "skip"`; `stoke predict`
//! answers the good inputs and gives an error line for each bad one (exit 2); `stoke serve`
//! answers 400 naming `images[i]`. Pillow refuses the same three files. A fourth, whose header
//! is valid and whose entropy data is garbage, is decoded as Pillow decodes it (libjpeg
//! resynchronises and only warns): no panic, no refusal.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::server::Server;
use common::{read_json, stoke};

/// A real JPEG photo: a gradient with some texture.
fn jpeg() -> Vec<u8> {
    let image = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 256) as u8])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::from(image)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    bytes
}

/// Entropy data overwritten with garbage after a valid header: Pillow decodes it.
fn garbage() -> Vec<u8> {
    let mut garbage = jpeg();
    let start = garbage.len() / 3;
    for (i, byte) in garbage[start..].iter_mut().enumerate() {
        *byte = (i * 7919 % 251) as u8;
    }
    garbage
}

/// The damaged files Pillow refuses, by name: a bogus marker (SOF8, arithmetic coding) in the
/// data, cut in half, cut to 300 bytes.
fn damaged() -> Vec<(&'static str, Vec<u8>)> {
    let good = jpeg();
    let middle = good.len() / 2;
    let bogus = [&good[..middle], b"\xff\xc8\x00\x04", &good[middle..]].concat();
    vec![
        ("bogus-marker.jpg", bogus),
        ("half.jpg", good[..good.len() / 2].to_vec()),
        ("first-300.jpg", good[..300].to_vec()),
    ]
}

/// The photo folder of `common::write_photo_folder` with a good JPEG, the garbage one and the
/// damaged ones among the "bars".
fn damaged_folder(dir: &Path) -> Vec<PathBuf> {
    common::write_photo_folder(dir, 8);
    fs::write(dir.join("bars/good.jpg"), jpeg()).unwrap();
    fs::write(dir.join("bars/garbage.jpg"), garbage()).unwrap();
    damaged()
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join("bars").join(name);
            fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

fn sets(data: &Path, extra: &[&str]) -> Vec<String> {
    [
        "data.dataset=image-folder".to_string(),
        format!("data.path={}", data.display()),
        "data.image.size=[12, 12]".into(),
        "data.image.color=\"rgb\"".into(),
        "model.hidden=[16]".into(),
        "train.batch_size=8".into(),
        "train.max_steps=4".into(),
        "train.progress=plain".into(),
    ]
    .into_iter()
    .chain(extra.iter().map(|s| s.to_string()))
    .collect()
}

#[test]
fn a_damaged_photo_is_refused_or_skipped_predicted_as_an_error_and_served_as_400() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    let bad = damaged_folder(&data);

    // Refused, naming the file, exit 2: no panic.
    let output = stoke()
        .args(["train", "configs/mnist-mlp.toml", "--run-dir"])
        .arg(dir.path().join("refused"))
        .args(sets(&data, &[]).iter().flat_map(|s| ["--set", s.as_str()]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(".jpg: cannot decode the JPEG"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Skipped and counted.
    let run = dir.path().join("skipped");
    common::train(
        "configs/mnist-mlp.toml",
        &sets(&data, &["data.on_error=skip"]),
        &run,
    );
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["skipped_records"]["count"], 3, "{summary}");

    // predict: an answer for each good input, an error line for each bad one, exit 2.
    let model = dir.path().join("model");
    stoke()
        .arg("export")
        .arg(&run)
        .arg("--out")
        .arg(&model)
        .assert()
        .success();
    let good = data.join("bars/good.jpg");
    let output = stoke()
        .arg("predict")
        .arg(&model)
        .arg(&good)
        .args(&bad)
        .arg(data.join("bars/000.png"))
        .arg(data.join("bars/garbage.jpg"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    for answered in [0, 4, 5] {
        assert!(lines[answered]["top"].is_array(), "{}", lines[answered]);
    }
    for (line, path) in lines[1..4].iter().zip(&bad) {
        let error = line["error"].as_str().unwrap();
        assert!(error.contains(path.to_str().unwrap()), "{error}");
    }
    assert!(
        lines[2]["error"]
            .as_str()
            .unwrap()
            .ends_with("image file is truncated"),
        "Pillow's verdict on a JPEG cut in half: {}",
        lines[2]
    );

    // serve: 400 naming the input.
    let server = Server::start(&model, &[]);
    let base64 = |path: &Path| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(fs::read(path).unwrap())
    };
    for (index, path) in bad.iter().enumerate() {
        let body = serde_json::json!({"images": [base64(&good), base64(path)]});
        let (status, answer) = server.post("/v1/predict", &body);
        assert_eq!(status, 400, "{} {answer}", path.display());
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with("images[1]: not an image"),
            "{index}: {error}"
        );
    }
    let garbage = data.join("bars/garbage.jpg");
    let (status, answer) = server.post(
        "/v1/predict",
        &serde_json::json!({"images": [base64(&good), base64(&garbage)]}),
    );
    assert_eq!(status, 200, "{answer}");
}
