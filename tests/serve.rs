//! `stoke serve` through the real binary on 127.0.0.1 with a real HTTP client: answers equal
//! `stoke predict`'s bit for bit (image, text and language-model artifacts), every bad
//! request gets its status and a message, the bounded queue sheds load with 503, reload
//! swaps a good artifact and refuses a corrupted one, and SIGTERM loses no request in flight.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use common::server::{Server, agent, answer, metric};
use common::{
    classifier_sets, lm_sets, stdout_of, stoke, succeeded, tiny, train, write_labelled_set,
};
use serde_json::{Value, json};

fn export(run: &Path, out: &Path) {
    stdout_of(stoke().arg("export").arg(run).arg("--out").arg(out));
}

/// `stoke predict --logits` on `model` with `args`: one JSON answer per input.
fn predict(model: &Path, args: &[&str]) -> Vec<Value> {
    stdout_of(
        stoke()
            .arg("predict")
            .arg(model)
            .args(["--backend", "flex", "--logits"])
            .args(args),
    )
    .lines()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect()
}

fn base64_of(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(fs::read(path).unwrap())
}

/// The answer's classes, probabilities and logits, which must equal predict's exactly.
fn scores(prediction: &Value) -> (Value, Value) {
    (prediction["top"].clone(), prediction["logits"].clone())
}

/// A multipart/form-data body with one file part per image and a top_k field.
fn multipart(images: &[PathBuf], top_k: usize) -> (String, Vec<u8>) {
    let boundary = "stoke-test-boundary-7f3a";
    let mut body = Vec::new();
    for path in images {
        body.extend(format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"images\"; filename=\"{}\"\r\ncontent-type: image/png\r\n\r\n",
            path.file_name().unwrap().to_str().unwrap()
        ).bytes());
        body.extend(fs::read(path).unwrap());
        body.extend(b"\r\n");
    }
    body.extend(
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"top_k\"\r\n\r\n{top_k}\r\n--{boundary}\r\ncontent-disposition: form-data; name=\"logits\"\r\n\r\ntrue\r\n--{boundary}--\r\n"
        )
        .bytes(),
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The shipped MNIST test split's images, 784 bytes each.
fn test_digits() -> Vec<Vec<u8>> {
    let file = fs::File::open(common::repo().join("datasets/mnist/t10k-images-idx3-ubyte.gz"));
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(file.unwrap()), &mut raw).unwrap();
    raw[16..].chunks_exact(784).map(<[u8]>::to_vec).collect()
}

/// Twelve digits of the shipped MNIST test split as PNG files.
fn digit_files(dir: &Path) -> Vec<PathBuf> {
    test_digits()
        .into_iter()
        .take(12)
        .enumerate()
        .map(|(i, pixels)| {
            let path = dir.join(format!("digit-{i}.png"));
            image::GrayImage::from_raw(28, 28, pixels)
                .unwrap()
                .save(&path)
                .unwrap();
            path
        })
        .collect()
}

/// A 28×28 grayscale image as a base64 PNG, as /v1/predict takes it.
fn png_base64(pixels: &[u8]) -> String {
    let mut png = Vec::new();
    image::GrayImage::from_raw(28, 28, pixels.to_vec())
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(png)
}

#[test]
fn answers_equal_predicts_for_image_text_and_language_model_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let digits = digit_files(dir.path());
    let digit_args: Vec<&str> = digits.iter().map(|p| p.to_str().unwrap()).collect();

    // A CNN: single-image requests from 4 threads at once (so batches mix requests), one
    // request with every image, and a multipart upload.
    let cnn_run = dir.path().join("cnn-run");
    let mut sets = tiny(300, 4);
    sets.extend(["model.channels=[4, 8]".into(), "model.hidden=16".into()]);
    train("configs/mnist-cnn.toml", &sets, &cnn_run);
    let cnn = dir.path().join("cnn");
    export(&cnn_run, &cnn);
    let expected = predict(&cnn, &digit_args);
    let server = Server::start(&cnn, &["--max-batch", "5", "--max-wait-ms", "20"]);
    let server = Arc::new(server);
    let singles: Vec<_> = (0..4)
        .map(|t| {
            let (server, digits) = (server.clone(), digits.clone());
            thread::spawn(move || {
                (t..digits.len())
                    .step_by(4)
                    .map(|i| {
                        let body = json!({"images": [base64_of(&digits[i])], "logits": true});
                        let (status, answer) = server.post("/v1/predict", &body);
                        assert_eq!(status, 200, "{answer}");
                        (i, answer["predictions"][0].clone())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in singles {
        for (i, prediction) in handle.join().unwrap() {
            assert_eq!(scores(&prediction), scores(&expected[i]), "digit {i} alone");
        }
    }
    let all: Vec<String> = digits.iter().map(|p| base64_of(p)).collect();
    let (status, answer) = server.post("/v1/predict", &json!({"images": all, "logits": true}));
    assert_eq!(status, 200, "{answer}");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), digits.len());
    for (i, prediction) in predictions.iter().enumerate() {
        assert_eq!(
            scores(prediction),
            scores(&expected[i]),
            "digit {i} in one request"
        );
        assert_eq!(prediction["input"], format!("images[{i}]"));
    }
    let (content_type, body) = multipart(&digits[..3], 3);
    let (status, answer) = server.post_bytes("/v1/predict", &content_type, &body);
    assert_eq!(status, 200, "{answer}");
    for (i, prediction) in answer["predictions"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            scores(prediction),
            scores(&expected[i]),
            "uploaded digit {i}"
        );
        assert_eq!(prediction["input"], format!("digit-{i}.png"));
    }
    let (_, model) = server.get("/v1/model");
    assert_eq!(model["task"], "image-classification", "{model}");
    assert_eq!(model["labels"].as_array().unwrap().len(), 10, "{model}");
    assert_eq!(answer["model_version"], model["version"]);

    // A text classifier.
    let data = dir.path().join("texts");
    write_labelled_set(&data, 120);
    let text_run = dir.path().join("text-run");
    train(
        "configs/spam-transformer.toml",
        &classifier_sets(&data, "flex"),
        &text_run,
    );
    let texts_model = dir.path().join("texts-model");
    export(&text_run, &texts_model);
    let texts = [
        "WIN A FREE PRIZE now",
        "notes from the tuesday meeting",
        "click",
    ];
    let text_args: Vec<&str> = texts.iter().flat_map(|t| ["--text", t]).collect();
    let expected = predict(&texts_model, &text_args);
    let server = Server::start(&texts_model, &[]);
    let (status, answer) = server.post("/v1/predict", &json!({"texts": texts, "logits": true}));
    assert_eq!(status, 200, "{answer}");
    for (i, prediction) in answer["predictions"].as_array().unwrap().iter().enumerate() {
        assert_eq!(scores(prediction), scores(&expected[i]), "text {i}");
        assert_eq!(prediction["input"], texts[i]);
    }
    let (status, answer) =
        server.post("/v1/predict", &json!({"texts": [texts[1]], "logits": true}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        scores(&answer["predictions"][0]),
        scores(&expected[1]),
        "text alone"
    );

    // A language model continues a prompt as `predict --generate` does.
    let lm_run = dir.path().join("lm-run");
    train("configs/mobydick-char-lm.toml", &lm_sets("flex"), &lm_run);
    let lm = dir.path().join("lm");
    export(&lm_run, &lm);
    let expected = stdout_of(stoke().arg("predict").arg(&lm).args([
        "--backend",
        "flex",
        "--generate",
        "24",
        "--prompt",
        "Call me",
        "--seed",
        "5",
    ]));
    let server = Server::start(&lm, &[]);
    let (status, answer) = server.post(
        "/v1/generate",
        &json!({"prompt": "Call me", "tokens": 24, "seed": 5}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["text"], expected.trim_end_matches('\n'));
    let (status, answer) = server.post("/v1/predict", &json!({"texts": ["Call me"]}));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("/v1/generate"),
        "{answer}"
    );
}

/// A tiny MLP artifact at `dir/name`, trained with `seed`.
fn mlp_artifact(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let run = dir.join(format!("{name}-run"));
    let mut sets = tiny(200, 2);
    sets.push(format!("run.seed={seed}"));
    train("configs/mnist-mlp.toml", &sets, &run);
    let artifact = dir.join(name);
    export(&run, &artifact);
    artifact
}

fn assert_refused(answer: (u16, Value), status: u16, message: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    let error = answer.1["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(message),
        "expected \"{message}\" in: {}",
        answer.1
    );
}

#[test]
fn every_bad_request_gets_its_status_and_a_message_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = mlp_artifact(dir.path(), "mlp", 1);
    let seven = common::repo().join("datasets/mnist/samples/7.png");
    let server = Server::start(&mlp, &["--max-inputs", "4", "--max-body-kb", "64"]);
    let png = base64_of(&seven);

    let bytes = |body: &str| server.post_bytes("/v1/predict", "application/json", body.as_bytes());
    assert_refused(bytes("{\"images\": ["), 400, "the body is not valid JSON");
    assert_refused(
        bytes("{\"images\": [\"!!\"]}"),
        400,
        "images[0]: not base64",
    );
    let not_png = base64::engine::general_purpose::STANDARD.encode(b"hello");
    let answer = server.post("/v1/predict", &json!({"images": [png, not_png]}));
    assert_refused(answer, 400, "images[1]: not an image");
    assert_refused(
        bytes("{\"images\": [\"a\", 3]}"),
        400,
        "images[1]: invalid type: integer",
    );
    assert_refused(bytes("{\"imgs\": []}"), 400, "unknown field `imgs`");
    assert_refused(bytes("{\"images\": []}"), 400, "images: empty");
    assert_refused(
        bytes("{\"texts\": [\"hi\"]}"),
        400,
        "this model classifies images",
    );
    let five = json!({"images": vec![png.clone(); 5]});
    assert_refused(server.post("/v1/predict", &five), 413, "--max-inputs");
    let huge = json!({"images": ["A".repeat(70 * 1024)]});
    assert_eq!(server.post("/v1/predict", &huge).0, 413);
    let (content_type, _) = multipart(&[], 1);
    let wrong_field = "--stoke-test-boundary-7f3a\r\ncontent-disposition: form-data; name=\"picture\"\r\n\r\nx\r\n--stoke-test-boundary-7f3a--\r\n";
    let answer = server.post_bytes("/v1/predict", &content_type, wrong_field.as_bytes());
    assert_refused(answer, 400, "unknown form field \"picture\"");
    let (content_type, body) = multipart(&[dir.path().join("mlp/manifest.json")], 1);
    let answer = server.post_bytes("/v1/predict", &content_type, &body);
    assert_refused(answer, 400, "images[0]: not an image");
    let answer = server.post("/v1/generate", &json!({"prompt": "x"}));
    assert_refused(answer, 400, "POST its inputs to /v1/predict");
    assert_refused(server.get("/v2/predict"), 404, "no route GET /v2/predict");

    // After all that, the server answers, and counted each status.
    let (status, answer) = server.post("/v1/predict", &json!({"images": [png], "top_k": 2}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["predictions"][0]["top"].as_array().unwrap().len(), 2);
    assert!(answer["predictions"][0].get("logits").is_none(), "{answer}");
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(server.get("/readyz").0, 200);
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    for line in [
        "stoke_http_requests_total{route=\"/v1/predict\",status=\"400\"} 9",
        "stoke_http_requests_total{route=\"/v1/predict\",status=\"413\"} 2",
        "stoke_http_requests_total{route=\"/v1/predict\",status=\"200\"} 1",
        "stoke_queue_capacity 1024",
        "stoke_queue_depth 0",
        "stoke_batch_size_count 1",
    ] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
    let version = server.get("/v1/model").1["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(metrics.contains(&format!("stoke_model_version{{version=\"{version}\"}} 1")));
    assert!(!server.log().contains("panicked"), "{}", server.log());
    parsed_by_prometheus_client(&metrics, dir.path());

    // A text model names the input that is not a string.
    let data = dir.path().join("texts");
    write_labelled_set(&data, 60);
    let text_run = dir.path().join("text-run");
    let mut sets = classifier_sets(&data, "flex");
    sets.push("train.max_steps=2".into());
    train("configs/spam-transformer.toml", &sets, &text_run);
    let texts_model = dir.path().join("texts-model");
    export(&text_run, &texts_model);
    let server = Server::start(&texts_model, &[]);
    let answer = server.post("/v1/predict", &json!({"texts": ["fine", 3]}));
    assert_refused(
        answer,
        400,
        "texts[1]: invalid type: integer `3`, expected a string",
    );
    let answer = server.post("/v1/predict", &json!({"images": [png]}));
    assert_refused(answer, 400, "this model classifies texts");
}

#[test]
fn a_full_queue_sheds_with_503_and_a_late_request_gets_504() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = mlp_artifact(dir.path(), "mlp", 1);
    let png = base64_of(&common::repo().join("datasets/mnist/samples/7.png"));
    // One input fills the queue; the batch waits 3 s to fill, past the 1 s deadline.
    let flags = [
        "--queue",
        "1",
        "--max-inputs",
        "1",
        "--max-batch",
        "2",
        "--max-wait-ms",
        "3000",
        "--deadline-ms",
        "1000",
    ];
    let server = Arc::new(Server::start(&mlp, &flags));
    let waiting = {
        let (server, png) = (server.clone(), png.clone());
        thread::spawn(move || server.post("/v1/predict", &json!({"images": [png]})))
    };
    // Once the first request holds the queue's one place, /readyz says so.
    let start = Instant::now();
    while server.get("/readyz").0 != 503 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the request was not admitted"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let (status, answer) = server.post("/v1/predict", &json!({"images": [png]}));
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["retry-after"], "1", "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("the queue is full")
    );
    let late = waiting.join().unwrap();
    assert_refused(late, 504, "deadline");
    assert_eq!(server.get("/readyz").0, 200);
    let (status, answer) = server.post("/v1/predict", &json!({"images": [png]}));
    assert_eq!(
        status, 504,
        "the queue is free again, and the batch still waits: {answer}"
    );
}

#[test]
fn reload_swaps_a_good_artifact_and_refuses_a_corrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = mlp_artifact(dir.path(), "first", 1);
    let second = mlp_artifact(dir.path(), "second", 2);
    let served = dir.path().join("served");
    let replace_with = |source: &Path| {
        fs::create_dir_all(&served).unwrap();
        for entry in fs::read_dir(source).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), served.join(entry.file_name())).unwrap();
        }
    };
    replace_with(&first);
    let seven = common::repo().join("datasets/mnist/samples/7.png");
    let seven_arg = [seven.to_str().unwrap()];
    let expected_first = predict(&first, &seven_arg);
    let expected_second = predict(&second, &seven_arg);
    assert_ne!(scores(&expected_first[0]), scores(&expected_second[0]));
    let server = Server::start(&served, &[]);
    let ask = || {
        let body = json!({"images": [base64_of(&seven)], "logits": true});
        let (status, answer) = server.post("/v1/predict", &body);
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let before = ask();
    assert_eq!(
        scores(&before["predictions"][0]),
        scores(&expected_first[0])
    );

    replace_with(&second);
    let (status, reloaded) = server.post("/admin/reload", &json!({}));
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(reloaded["previous_version"], before["model_version"]);
    assert_ne!(reloaded["model_version"], before["model_version"]);
    let after = ask();
    assert_eq!(after["model_version"], reloaded["model_version"]);
    assert_eq!(
        scores(&after["predictions"][0]),
        scores(&expected_second[0])
    );

    // One flipped byte in the weights: refused, and the second model keeps answering.
    let record = served.join("model.bpk");
    let mut bytes = fs::read(&record).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&record, bytes).unwrap();
    let answer = server.post("/admin/reload", &json!({}));
    assert_refused(answer, 409, "reload refused, still serving version");
    let still = ask();
    assert_eq!(still["model_version"], reloaded["model_version"]);
    assert_eq!(
        scores(&still["predictions"][0]),
        scores(&expected_second[0])
    );

    // SIGHUP reloads too.
    replace_with(&first);
    server.signal(libc::SIGHUP);
    let start = Instant::now();
    while server.get("/v1/model").1["version"] != before["model_version"] {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(scores(&ask()["predictions"][0]), scores(&expected_first[0]));
    let (_, metrics) = server.get("/metrics");
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("stoke_model_reloads_total{outcome=\"swapped\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stoke_model_reloads_total{outcome=\"refused\"} 1"),
        "{metrics}"
    );
}

#[test]
fn sigterm_answers_every_request_in_flight_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = mlp_artifact(dir.path(), "mlp", 1);
    let png = base64_of(&common::repo().join("datasets/mnist/samples/7.png"));
    // Batches wait up to 2 s to fill, so requests are still queued when SIGTERM comes.
    let mut server = Server::start(&mlp, &["--max-batch", "64", "--max-wait-ms", "2000"]);
    let url = server.url.clone();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (url, png) = (url.clone(), png.clone());
            thread::spawn(move || {
                let body = json!({"images": [png.clone(), png]});
                answer(
                    agent()
                        .post(&format!("{url}/v1/predict"))
                        .header("content-type", "application/json")
                        .send(body.to_string().as_bytes()),
                )
            })
        })
        .collect();
    // Every request admitted (32 inputs queued), then SIGTERM.
    let start = Instant::now();
    while !server
        .get("/metrics")
        .1
        .as_str()
        .unwrap()
        .contains("stoke_queue_depth 32")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the requests were not admitted"
        );
        thread::sleep(Duration::from_millis(10));
    }
    server.signal(libc::SIGTERM);
    for client in clients {
        let (status, answer) = client.join().unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["predictions"].as_array().unwrap().len(), 2);
    }
    let status = server.wait(Duration::from_secs(20));
    assert!(status.success(), "exit {status:?}:\n{}", server.log());
    assert!(
        server
            .log()
            .contains("stopped: every admitted request was answered")
    );
    assert!(agent().get(&format!("{url}/healthz")).call().is_err());
}

/// The Prometheus project's Python client parses the page as OpenMetrics and reads the
/// counters back. Skipped without it, except in CI (`common::optional`).
fn parsed_by_prometheus_client(metrics: &str, dir: &Path) {
    if !common::optional::available(&common::optional::PROMETHEUS) {
        return;
    }
    let page = dir.join("metrics.txt");
    fs::write(&page, metrics).unwrap();
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
requests = families["stoke_http_requests"]
print(sum(s.value for s in requests.samples if s.labels == {"route": "/v1/predict", "status": "400"}))
print(families["stoke_batch_size"].type, families["stoke_queue_capacity"].samples[0].value)
"#;
    let output = succeeded(
        Command::new("python3")
            .args(["-c", script])
            .arg(&page)
            .output()
            .unwrap(),
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "9\nhistogram 1024\n"
    );
}

/// The drift alerts of the last full window, by statistic, and the windows scored.
fn drift_state(server: &Server) -> (Vec<(String, f64, f64)>, f64) {
    let (status, page) = server.get("/metrics");
    assert_eq!(status, 200);
    let page = page.as_str().unwrap().to_string();
    let statistics = ["classes", "confidence", "intensity_c0"]
        .iter()
        .map(|statistic| {
            let sample = |name: &str| {
                metric(&page, &format!("{name}{{statistic=\"{statistic}\"}}"))
                    .unwrap_or_else(|| panic!("no {name} for {statistic} in\n{page}"))
            };
            (
                statistic.to_string(),
                sample("stoke_drift_alert"),
                sample("stoke_drift_alerts_total"),
            )
        })
        .collect();
    (
        statistics,
        metric(&page, "stoke_drift_windows_total").unwrap(),
    )
}

#[test]
fn drift_is_flagged_on_inverted_digits_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train("configs/mnist-mlp.toml", &tiny(6000, 300), &run);
    let artifact = dir.path().join("model");
    export(&run, &artifact);
    let profile = common::read_json(&artifact.join("profile.json"));
    assert_eq!(profile["samples"], 600, "the validation split: {profile}");
    assert_eq!(profile["class_counts"].as_array().unwrap().len(), 10);

    let server = Server::start(&artifact, &["--drift-window", "100"]);
    let (_, model) = server.get("/v1/model");
    assert_eq!(model["drift"]["window"], 100, "{model}");
    let digits = test_digits();
    let send = |images: &[Vec<u8>], inverted: bool| {
        for chunk in images.chunks(25) {
            let images: Vec<String> = chunk
                .iter()
                .map(|pixels| {
                    let pixels: Vec<u8> = match inverted {
                        true => pixels.iter().map(|p| 255 - p).collect(),
                        false => pixels.clone(),
                    };
                    png_base64(&pixels)
                })
                .collect();
            let (status, answer) = server.post("/v1/predict", &json!({"images": images}));
            assert_eq!(status, 200, "{answer}");
        }
    };
    // Two disjoint windows of digits the run never saw, from the holdout's distribution.
    for window in 0..2 {
        send(&digits[window * 100..(window + 1) * 100], false);
        let (statistics, windows) = drift_state(&server);
        assert_eq!(windows, (window + 1) as f64);
        for (statistic, alert, alerts) in statistics {
            assert_eq!(
                (alert, alerts),
                (0.0, 0.0),
                "window {window}: {statistic} alerted"
            );
        }
    }
    // A planted shift: the next hundred digits, inverted.
    send(&digits[200..300], true);
    let (statistics, windows) = drift_state(&server);
    assert_eq!(windows, 3.0);
    for (statistic, alert, alerts) in statistics {
        assert_eq!(
            (alert, alerts),
            (1.0, 1.0),
            "inverted digits: {statistic} did not alert"
        );
    }
}
