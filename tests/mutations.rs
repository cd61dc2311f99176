//! No input crashes stoke, shown on stable without a fuzzer: real files of every format
//! (`stoke::decoders`: images, IDX, text records, table rows, tokenizers, configs,
//! checkpoint and artifact files, pretrained weights), each mutated a few thousand times
//! with seeded bit flips, truncations, insertions and splices, must decode or be refused,
//! never panic. The files the fuzzers found crashes with (`tests/regressions/<decoder>/`) are
//! replayed. HTTP bodies are mutated against a real `stoke serve`: every answer is 200 or
//! 4xx, never a 500, and the server lives on.

mod common;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stoke::decoders::Decoder;

use common::{repo, stoke};

/// Mutations of each seed file per decoder (about 2,000 per decoder in all).
const PER_DECODER: usize = 2000;

/// Real files each decoder reads, from the repository's datasets and fixtures or made here
/// as stoke and its users make them.
fn seeds(decoder: Decoder, scratch: &Path) -> Vec<Vec<u8>> {
    let file = |path: &str| fs::read(repo().join(path)).unwrap();
    match decoder {
        Decoder::Image => vec![
            file("tests/fixtures/timm/photo/photo.png"),
            file("tests/fixtures/timm/photo/photo.jpg"),
            file("datasets/mnist/samples/7.png"),
        ],
        Decoder::IdxImages | Decoder::IdxLabels => {
            let (images, labels) = common::shards::mnist("t10k");
            let count = 3u32.to_be_bytes();
            let idx = match decoder {
                Decoder::IdxImages => {
                    let mut idx = [
                        &[0, 0, 8, 3][..],
                        &count,
                        &28u32.to_be_bytes(),
                        &28u32.to_be_bytes(),
                    ]
                    .concat();
                    images[..3].iter().for_each(|image| idx.extend(image));
                    idx
                }
                _ => [&[0, 0, 8, 1][..], &count, &labels[..3]].concat(),
            };
            vec![idx]
        }
        Decoder::TextJsonl => vec![
            texts()
                .iter()
                .map(|(text, label)| {
                    serde_json::json!({"text": text, "label": label}).to_string() + "\n"
                })
                .collect::<String>()
                .into_bytes(),
        ],
        Decoder::TextCsv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(["text", "label"]).unwrap();
            for (text, label) in texts() {
                writer.write_record([text, label]).unwrap();
            }
            vec![writer.into_inner().unwrap()]
        }
        Decoder::TextParquet => vec![parquet_texts()],
        Decoder::TableCsv => {
            let path = scratch.join("diamonds.csv");
            common::write_fake_diamonds(&path, 12);
            vec![fs::read(path).unwrap()]
        }
        Decoder::Tokenizer => {
            let texts: Vec<&str> = texts().iter().map(|(text, _)| *text).collect();
            let config = stoke::config::TokenizerConfig {
                vocab_size: 64,
                ..Default::default()
            };
            let trained = stoke::data::Tokenizer::train(&config, texts.iter().copied()).unwrap();
            vec![trained.to_json().into_bytes()]
        }
        Decoder::Config => fs::read_dir(repo().join("configs"))
            .unwrap()
            .map(|entry| fs::read(entry.unwrap().path()).unwrap())
            .collect(),
        Decoder::CheckpointManifest => {
            vec![file(
                "tests/fixtures/v0.1-mlp-run/checkpoints/step-4/manifest.json",
            )]
        }
        Decoder::CheckpointState => {
            vec![file(
                "tests/fixtures/v0.1-mlp-run/checkpoints/step-4/state.json",
            )]
        }
        Decoder::ModelRecord => {
            vec![file(
                "tests/fixtures/v0.1-mlp-run/checkpoints/step-4/model.bpk",
            )]
        }
        Decoder::Safetensors => vec![file("tests/fixtures/timm/resnet18-tiny/model.safetensors")],
        Decoder::PytorchPickle => {
            vec![file("tests/fixtures/timm/efficientnet-lite-tiny/model.pth")]
        }
        Decoder::ArtifactManifest => {
            let out = scratch.join("artifact");
            stoke()
                .args([
                    "export",
                    "tests/fixtures/v0.1-mlp-run",
                    "--no-profile",
                    "--out",
                ])
                .arg(&out)
                .assert()
                .success();
            vec![fs::read(out.join("manifest.json")).unwrap()]
        }
    }
}

fn texts() -> [(&'static str, &'static str); 4] {
    [
        ("WIN a free prize now", "spam"),
        ("lunch at noon?", "ham"),
        ("cheap pills, \"today\" only", "spam"),
        ("the report is attached\nsee page 2", "ham"),
    ]
}

fn parquet_texts() -> Vec<u8> {
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    let column = |at: usize| -> ArrayRef {
        Arc::new(StringArray::from(
            texts().iter().map(|t| [t.0, t.1][at]).collect::<Vec<_>>(),
        ))
    };
    let batch = RecordBatch::try_from_iter([("text", column(0)), ("label", column(1))]).unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

/// One seeded mutation of `seed`: bit flips, a truncation, an inserted or deleted run, a
/// run of "interesting" bytes, or a splice with `other`.
fn mutate(seed: &[u8], other: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    let rounds = rng.random_range(1..=4);
    for _ in 0..rounds {
        let at = |rng: &mut ChaCha8Rng, len: usize| rng.random_range(0..len.max(1));
        match rng.random_range(0..6) {
            0 if !bytes.is_empty() => {
                for _ in 0..rng.random_range(1..=8) {
                    let i = at(rng, bytes.len());
                    bytes[i] ^= 1 << rng.random_range(0..8);
                }
            }
            1 => bytes.truncate(at(rng, bytes.len())),
            2 => {
                let i = at(rng, bytes.len()).min(bytes.len());
                let run: Vec<u8> = (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
                bytes.splice(i..i, run);
            }
            3 if !bytes.is_empty() => {
                let i = at(rng, bytes.len());
                let end = (i + rng.random_range(1..256)).min(bytes.len());
                bytes.drain(i..end);
            }
            4 if !bytes.is_empty() => {
                let interesting = [0x00, 0xff, 0x7f, 0x80, b'"', b'\n', b'{', b'9'];
                let i = at(rng, bytes.len());
                let end = (i + rng.random_range(1..16)).min(bytes.len());
                let byte = interesting[rng.random_range(0..interesting.len())];
                bytes[i..end].fill(byte);
            }
            _ if !other.is_empty() => {
                let i = at(rng, bytes.len()).min(bytes.len());
                let j = at(rng, other.len());
                let end = (j + rng.random_range(1..512)).min(other.len());
                bytes.truncate(i);
                bytes.extend_from_slice(&other[j..end]);
            }
            _ => {}
        }
    }
    bytes
}

/// `decoder` on `bytes`; the panic's message if it panicked.
fn panics(decoder: Decoder, bytes: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| decoder.decode(bytes)))
        .err()
        .map(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
}

#[test]
fn mutated_files_of_every_format_are_refused_or_read_never_a_panic() {
    let scratch = tempfile::tempdir().unwrap();
    let all: Vec<(Decoder, Vec<Vec<u8>>)> = Decoder::ALL
        .iter()
        .map(|&decoder| (decoder, seeds(decoder, scratch.path())))
        .collect();
    // The fuzzers start from the same real files (fuzz/run sets this).
    if let Some(corpus) = std::env::var_os("STOKE_FUZZ_SEEDS") {
        for (decoder, seeds) in &all {
            let dir = Path::new(&corpus).join(decoder.name());
            fs::create_dir_all(&dir).unwrap();
            for seed in seeds {
                fs::write(dir.join(stoke::files::digest(seed).sha256), seed).unwrap();
            }
        }
    }
    let mut failures = Vec::new();
    for (index, (decoder, seeds)) in all.iter().enumerate() {
        // The seeds themselves are what stoke writes and reads.
        for seed in seeds {
            if let Err(err) = decoder.decode(seed) {
                failures.push(format!("{}: a seed does not decode: {err}", decoder.name()));
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(index as u64);
        let mut refused = 0;
        for trial in 0..PER_DECODER {
            let seed = &seeds[trial % seeds.len()];
            let (_, others) = &all[rng.random_range(0..all.len())];
            let other = &others[rng.random_range(0..others.len())];
            let bytes = mutate(seed, other, &mut rng);
            match panics(*decoder, &bytes) {
                Some(message) => {
                    let path = keep(*decoder, &bytes);
                    failures.push(format!(
                        "{} panicked on mutation {trial} ({message}); kept as {}",
                        decoder.name(),
                        path.display()
                    ));
                }
                None => refused += usize::from(decoder.decode(&bytes).is_err()),
            }
        }
        eprintln!(
            "{}: {PER_DECODER} mutations of {} seeds, {refused} refused, no panic",
            decoder.name(),
            seeds.len()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Keeps a crashing input where `cargo test` replays it once it is added to the repository.
fn keep(decoder: Decoder, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("stoke-mutation-crashes")
        .join(decoder.name());
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(stoke::files::digest(bytes).sha256);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn what_the_fuzzers_found_is_refused_without_a_panic() {
    let root = repo().join("tests/regressions");
    let mut replayed = 0;
    for decoder in Decoder::ALL {
        let Ok(entries) = fs::read_dir(root.join(decoder.name())) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            if let Some(message) = panics(decoder, &bytes) {
                panic!("{}: {} panics: {message}", decoder.name(), path.display());
            }
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} inputs the fuzzers found");
    assert!(
        replayed > 0,
        "tests/regressions holds the fuzzers' findings"
    );
}

#[test]
fn mutated_request_bodies_get_4xx_from_a_real_server_never_a_500() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("model");
    stoke()
        .args(["export", "tests/fixtures/v0.1-mlp-run", "--out"])
        .arg(&artifact)
        .assert()
        .success();
    let server = common::server::Server::start(&artifact, &[]);
    let png = fs::read(repo().join("datasets/mnist/samples/7.png")).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
    let json = serde_json::json!({"images": [encoded], "top_k": 2})
        .to_string()
        .into_bytes();
    let boundary = "stoke-boundary";
    let mut multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"7.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    multipart.extend(&png);
    multipart.extend(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"top_k\"\r\n\r\n2\r\n--{boundary}--\r\n")
            .as_bytes(),
    );
    let form = format!("multipart/form-data; boundary={boundary}");
    let bodies: [(&str, &[u8]); 2] = [("application/json", &json), (form.as_str(), &multipart)];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut statuses = std::collections::BTreeMap::new();
    for (content_type, body) in bodies {
        // The bodies as sent are answered.
        let (status, answer) = server.post_bytes("/v1/predict", content_type, body);
        assert_eq!(status, 200, "{answer}");
        for _ in 0..150 {
            let mutated = mutate(body, &png, &mut rng);
            let (status, answer) = server.post_bytes("/v1/predict", content_type, &mutated);
            assert!(
                status == 200 || (400..500).contains(&status),
                "{status} for a mutated {content_type} body: {answer}"
            );
            *statuses.entry(status).or_insert(0) += 1;
        }
    }
    eprintln!("statuses of 300 mutated bodies: {statuses:?}");
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200, "the server lives on");
}
