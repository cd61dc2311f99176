//! Starting from pretrained weights: Hugging Face BERT and GPT-2 checkpoints give the logits
//! `transformers` gives (fixtures made by scripts/hf_fixtures.py, so no torch is needed here),
//! bad checkpoints are refused with one line, and `export --format hf` writes them back.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde_json::Value;

use common::{repo, stoke};
use stoke::config::{BertConfig, BertPooling, Gpt2Config, ModelConfig};
use stoke::data::DataSpec;
use stoke::model::{Bert, Input};
use stoke::train::{Held, Net};

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/hf").join(name)
}

fn expected(name: &str) -> Vec<Value> {
    let text = fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    value["cases"].as_array().unwrap().clone()
}

fn ints(value: &Value) -> Vec<Vec<i64>> {
    serde_json::from_value(value.clone()).unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    let rows: Vec<Vec<f32>> = serde_json::from_value(value.clone()).unwrap();
    rows.concat()
}

fn tensor(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let shape = [rows.len(), rows[0].len()];
    Tensor::from_ints(TensorData::new(rows.concat(), shape), device)
}

fn assert_close(got: Tensor<2>, want: &[f32], tolerance: f32, what: &str) {
    let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: element count");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= tolerance, "{what}: largest difference {worst:e}");
}

/// `model` completed from the fixture's config.json and built for `spec` with the fixture's
/// weights, as a fresh run with `model.init_from` does.
fn pretrained(name: &str, model: ModelConfig, spec: &DataSpec) -> Box<dyn Net> {
    pretrained_from(&fixture(name), model, spec)
}

fn pretrained_from(folder: &Path, model: ModelConfig, spec: &DataSpec) -> Box<dyn Net> {
    let mut config = stoke::config::ExperimentConfig {
        model: ModelConfig {
            init_from: Some(folder.to_path_buf()),
            ..model
        },
        ..Default::default()
    };
    stoke::train::resolve(&mut config).unwrap();
    let mut model = common::build(&config.model, spec);
    stoke::train::initial_weights(model.as_mut(), &config.model, spec).unwrap();
    model
}

fn bert_config(config: BertConfig) -> ModelConfig {
    ModelConfig::of("bert", &config)
}

/// The BERT a built model is.
fn as_bert(model: &dyn Net) -> &Bert {
    &model
        .as_any()
        .downcast_ref::<Held<Bert>>()
        .expect("a bert model")
        .model
}

fn scores(model: &dyn Net, input: Input) -> Tensor<2> {
    model.scores(input).expect("the model reads stoke's inputs")
}

fn text_spec(classes: usize) -> DataSpec {
    DataSpec::TextClassification {
        classes: (0..classes).map(|c| c.to_string()).collect(),
        vocab_size: 99,
        max_length: 16,
        pad_id: 0,
    }
}

#[test]
fn bert_matches_transformers_bert_model_and_its_pooler() {
    let model = pretrained(
        "bert-tiny-base",
        bert_config(BertConfig::default()),
        &text_spec(2),
    );
    let bert = as_bert(model.as_ref());
    let device = Device::flex();
    for (index, case) in expected("bert-tiny-base").iter().enumerate() {
        let ids = tensor(&ints(&case["input_ids"]), &device);
        let types = tensor(&ints(&case["token_type_ids"]), &device);
        let padding = tensor(&ints(&case["attention_mask"]), &device).equal_elem(0);
        let states = bert.encode(ids, types, padding);
        let [_, length, hidden] = states.dims();
        let real: Vec<Vec<i64>> = ints(&case["attention_mask"]);
        // transformers computes padded positions too; stoke's are never read, so compare the
        // real ones only.
        let flat: Vec<f32> = states.clone().into_data().try_to_vec().unwrap();
        let want = floats(&case["last_hidden_state"]);
        for (b, mask) in real.iter().enumerate() {
            for t in (0..length).filter(|&t| mask[t] == 1) {
                let at = (b * length + t) * hidden;
                for h in 0..hidden {
                    let (got, want) = (flat[at + h], want[at + h]);
                    assert!(
                        (got - want).abs() < 1e-4,
                        "case {index}: state [{b}, {t}, {h}] is {got}, transformers {want}"
                    );
                }
            }
        }
        assert_close(
            bert.pool(states),
            &floats(&case["pooler_output"]),
            1e-4,
            &format!("case {index} pooler"),
        );
    }
}

#[test]
fn bert_for_sequence_classification_gives_the_same_logits() {
    let model = pretrained(
        "bert-tiny",
        bert_config(BertConfig::default()),
        &text_spec(3),
    );
    let bert = as_bert(model.as_ref());
    let device = Device::flex();
    for (index, case) in expected("bert-tiny").iter().enumerate() {
        let ids = tensor(&ints(&case["input_ids"]), &device);
        let types = tensor(&ints(&case["token_type_ids"]), &device);
        let padding = tensor(&ints(&case["attention_mask"]), &device).equal_elem(0);
        let want = floats(&case["logits"]);
        let what = format!("case {index} logits");
        assert_close(
            bert.logits(ids.clone(), types, padding.clone()),
            &want,
            1e-4,
            &what,
        );
        // The path training takes (every token of type 0) where the case's types are all 0.
        if ints(&case["token_type_ids"])
            .iter()
            .flatten()
            .all(|&t| t == 0)
        {
            assert_close(
                scores(model.as_ref(), Input::Tokens { ids, padding }),
                &want,
                1e-4,
                &what,
            );
        }
    }
}

#[test]
fn gpt2_matches_transformers_gpt2_lm_head_model() {
    let spec = DataSpec::LanguageModel {
        vocab_size: 99,
        context_length: 16,
        chars_per_token: 1.0,
    };
    let gpt2 = ModelConfig::of("gpt2", &Gpt2Config::default());
    let model = pretrained("gpt2-tiny", gpt2, &spec);
    let device = Device::flex();
    for (index, case) in expected("gpt2-tiny").iter().enumerate() {
        let ids = tensor(&ints(&case["input_ids"]), &device);
        let logits = scores(model.as_ref(), Input::Sequences(ids));
        assert_close(
            logits,
            &floats(&case["logits"]),
            1e-4,
            &format!("case {index} logits"),
        );
    }
}

#[test]
fn mean_pooling_reads_the_real_tokens_only() {
    let network = bert_config(BertConfig {
        pooling: BertPooling::Mean,
        ..BertConfig::default()
    });
    let model = pretrained("bert-tiny-base", network, &text_spec(2));
    let device = Device::flex();
    let short = tensor(&[vec![2, 17, 45, 3]], &device);
    let padded = tensor(&[vec![2, 17, 45, 3, 0, 0]], &device);
    let none = Tensor::<2, Bool>::from_bool(TensorData::from([[false; 4]]), &device);
    let some = Tensor::<2, Bool>::from_bool(
        TensorData::from([[false, false, false, false, true, true]]),
        &device,
    );
    let a: Vec<f32> = scores(
        model.as_ref(),
        Input::Tokens {
            ids: short,
            padding: none,
        },
    )
    .into_data()
    .try_to_vec()
    .unwrap();
    let b = scores(
        model.as_ref(),
        Input::Tokens {
            ids: padded,
            padding: some,
        },
    );
    assert_close(b, &a, 1e-5, "padded and unpadded");
}

/// A copy of a fixture in a temporary folder, to damage.
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(name);
    fs::create_dir(&copy).unwrap();
    for entry in fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    (dir, copy)
}

/// `stoke check` of a tiny bert config starting from `from`; the exit code and stderr.
fn check_from(from: &Path, kind: &str) -> (i32, String) {
    let config = match kind {
        "bert" => "configs/spam-minilm.toml",
        _ => "configs/mobydick-gpt2.toml",
    };
    let output = stoke()
        .args(["check", config, "--set"])
        .arg(format!("model.init_from={}", from.display()))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn refused(from: &Path, kind: &str, expected: &str) {
    let (code, stderr) = check_from(from, kind);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unknown_model_type_is_refused_naming_the_known_ones() {
    let (_dir, copy) = copy_of("bert-tiny");
    let config = fs::read_to_string(copy.join("config.json")).unwrap();
    fs::write(
        copy.join("config.json"),
        config.replace("\"model_type\": \"bert\"", "\"model_type\": \"t5\""),
    )
    .unwrap();
    refused(
        &copy,
        "bert",
        "model_type \"t5\" is not one this build reads; it reads bert, gpt2",
    );
}

#[test]
fn a_config_naming_another_shape_is_refused_with_the_difference() {
    let output = stoke()
        .args(["check", "configs/spam-minilm.toml", "--set"])
        .arg(format!(
            "model.init_from={}",
            fixture("bert-tiny").display()
        ))
        .args(["--set", "model.hidden_size=64"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("model.hidden_size = 64 but config.json says 32"),
        "{stderr}"
    );
}

#[test]
fn pytorch_pickles_are_refused_with_how_to_convert_them() {
    let (_dir, copy) = copy_of("bert-tiny");
    fs::rename(
        copy.join("model.safetensors"),
        copy.join("pytorch_model.bin"),
    )
    .unwrap();
    refused(&copy, "bert", "stoke does not unpickle PyTorch files");
}

/// Trains `config` for a step from `from` into a fresh run directory; exit code and stderr.
fn train_from(from: &Path, config: &str, run: &Path) -> (i32, String) {
    let data = run.with_extension("data");
    common::write_labelled_set(&data, 64);
    let output = stoke()
        .args(["train", config, "--run-dir"])
        .arg(run)
        .arg("--set")
        .arg(format!("model.init_from={}", from.display()))
        .arg("--set")
        .arg(format!("data.path={}", data.display()))
        .args(["--set", "data.text.max_length=32"])
        .args(
            common::tiny(64, 2)
                .iter()
                .flat_map(|s| ["--set", s.as_str()]),
        )
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn missing_extra_and_misshaped_tensors_are_refused_naming_them_and_nothing_is_written() {
    let cases: [(&str, &str); 3] = [
        (
            "bert.encoder.layer.1.output.dense.bias",
            "it lacks 1 tensor the model needs, first layers.1.feed_forward.linear_outer.bias",
        ),
        (
            "extra",
            "tensor bert.encoder.layer.0.crossattention.bias is not part of a bert model stoke knows",
        ),
        (
            "misshaped",
            "tensor layers.0.attention.query.bias has shape [16] there, but the model's is [32]",
        ),
    ];
    for (change, expected) in cases {
        let (dir, copy) = copy_of("bert-tiny");
        rewrite_safetensors(&copy.join("model.safetensors"), change);
        let run = dir.path().join("run");
        let (code, stderr) = train_from(&copy, "configs/spam-minilm.toml", &run);
        assert_eq!(code, 2, "{change}: {stderr}");
        assert!(stderr.contains(expected), "{change}: {stderr}");
        assert_eq!(
            stderr
                .trim()
                .lines()
                .filter(|l| l.starts_with("error"))
                .count(),
            1,
            "{stderr}"
        );
        assert!(
            !run.exists(),
            "{change}: a refused start wrote {}",
            run.display()
        );
    }
}

#[test]
fn a_tokenizer_larger_than_the_checkpoints_vocabulary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("texts");
    common::write_labelled_set(&data, 64);
    let output = stoke()
        .args(["train", "configs/spam-minilm.toml", "--run-dir"])
        .arg(dir.path().join("run"))
        .arg("--set")
        .arg(format!(
            "model.init_from={}",
            fixture("bert-tiny").display()
        ))
        .arg("--set")
        .arg(format!("data.path={}", data.display()))
        // A byte-level BPE starts from 256 byte tokens: more than the checkpoint's 99.
        .args(["--set", "data.tokenizer.kind=bpe"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tokens but model.vocab_size is 99; use the model's own tokenizer"),
        "{stderr}"
    );
}

/// Rewrites a safetensors file: drops the tensor `change` names, or adds an unknown tensor
/// ("extra"), or halves a bias ("misshaped").
fn rewrite_safetensors(path: &Path, change: &str) {
    let bytes = fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .filter(|(name, _, _)| name != change)
        .collect();
    match change {
        "extra" => tensors.push((
            "bert.encoder.layer.0.crossattention.bias".into(),
            vec![32],
            vec![0; 32 * 4],
        )),
        "misshaped" => {
            let bias = tensors
                .iter_mut()
                .find(|(name, _, _)| name == "bert.encoder.layer.0.attention.self.query.bias")
                .unwrap();
            bias.1 = vec![16];
            bias.2.truncate(16 * 4);
        }
        _ => {}
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    fs::write(
        path,
        safetensors::tensor::serialize(views, Some(metadata)).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_gpt2_checkpoint_fine_tunes_on_a_corpus_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("gpt2");
    // No shape keys: they come from the checkpoint's config.json. Moby Dick's lowercased
    // characters fit its 99 token embeddings.
    let config = dir.path().join("gpt2.toml");
    fs::write(
        &config,
        format!(
            "[data]\ndataset = \"text-corpus\"\npath = \"{}\"\n\n[data.text]\ncontext_length = 32\n\n\
             [data.tokenizer]\nkind = \"char\"\nlowercase = true\n\n\
             [model]\nkind = \"gpt2\"\ninit_from = \"{}\"\n",
            repo().join("datasets/moby-dick/moby-dick.txt.gz").display(),
            fixture("gpt2-tiny").display()
        ),
    )
    .unwrap();
    let sets = [
        "data.limit=200".to_string(),
        "train.max_steps=4".into(),
        "train.batch_size=8".into(),
        "train.progress=plain".into(),
    ];
    let stderr = common::train(config.to_str().unwrap(), &sets, &run);
    assert!(stderr.contains("init: 36 tensors from"), "{stderr}");
    let resolved = fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("hidden_size = 32"), "{resolved}");
    let text = common::stdout_of(
        stoke()
            .args(["generate"])
            .arg(&run)
            .args(["--prompt", "call me", "--tokens", "20", "--seed", "1"]),
    );
    assert!(text.starts_with("call me"), "{text}");
    assert!(text.trim_end().chars().count() > "call me".len(), "{text}");

    // Exported as a Hugging Face folder and read back as a start: the same weights.
    let out = dir.path().join("hf");
    let output = stoke()
        .arg("export")
        .arg(&run)
        .args(["--format", "hf", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("character tokenizer has no Hugging Face form"),
        "{stderr}"
    );
    let exported = common::read_json(&out.join("config.json"));
    assert_eq!(exported["architectures"][0], "GPT2LMHeadModel");
    let trained = stoke::export::load(
        &run,
        &stoke::export::CheckpointChoice::Last,
        Some(stoke::config::BackendChoice::Flex),
    )
    .unwrap();
    let spec = trained.spec.clone();
    let mut model_config = trained.model_config.clone();
    model_config.init_from = Some(out);
    let mut reread = common::build(&model_config, &spec);
    stoke::train::initial_weights(reread.as_mut(), &model_config, &spec).unwrap();
    assert_eq!(reread.weights_digest(), trained.model.weights_digest());
}

#[test]
fn sharded_checkpoints_load_like_one_file() {
    let (_dir, copy) = copy_of("bert-tiny");
    let bytes = fs::read(copy.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in names.chunks(names.len() / 2 + 1).enumerate() {
        let shard_name = format!("model-0000{}-of-00002.safetensors", shard + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> = part
            .iter()
            .map(|name| (name.clone(), file.tensor(name).unwrap()))
            .collect();
        fs::write(
            copy.join(&shard_name),
            safetensors::tensor::serialize(views, None).unwrap(),
        )
        .unwrap();
        for name in part {
            weight_map.insert(name.clone(), Value::String(shard_name.clone()));
        }
    }
    fs::remove_file(copy.join("model.safetensors")).unwrap();
    fs::write(
        copy.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    let sharded = pretrained_from(&copy, bert_config(BertConfig::default()), &text_spec(3));
    let whole = pretrained(
        "bert-tiny",
        bert_config(BertConfig::default()),
        &text_spec(3),
    );
    assert_eq!(sharded.weights_digest(), whole.weights_digest());
}
