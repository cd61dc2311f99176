//! The loop, evaluation, bench, export, serving and reports name no model family: every
//! kind, built-in or a user's, goes through `model::Model`, `train::Net` and the registry.
//! And the training loop names no task: losses and metrics are the task module's.

use std::fs;
use std::path::Path;

/// The built-in families' type names and kind names.
const FAMILIES: [&str; 16] = [
    "Mlp",
    "Cnn",
    "Resnet",
    "TextClassifier",
    "model::LanguageModel",
    "Bert",
    "Gpt2",
    "TabularMlp",
    "\"mlp\"",
    "\"cnn\"",
    "\"resnet\"",
    "\"text-classifier\"",
    "\"lm\"",
    "\"bert\"",
    "\"gpt2\"",
    "\"tabular-mlp\"",
];

/// What names a task.
const TASKS: [&str; 5] = [
    "TaskSpec::",
    "Scored::Classes",
    "Scored::Values",
    "Scored::Labels",
    "CrossEntropyLoss",
];

fn source(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Code only: comments may say what a file does for which family, and unit tests may
    // build one.
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn files_of(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| format!("{dir}/{}", path.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

fn named(files: &[String], names: &[&str]) -> Vec<String> {
    files
        .iter()
        .flat_map(|file| {
            let text = source(file);
            names
                .iter()
                .filter(|name| {
                    // Whole identifiers or strings: `Mlp` is not in `TabularMlpConfig`'s …
                    text.match_indices(*name).any(|(at, _)| {
                        let before = text[..at].chars().next_back();
                        let after = text[at + name.len()..].chars().next();
                        let ident =
                            |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                        name.starts_with('"')
                            || name.contains("::")
                            || !(ident(before) || ident(after))
                    })
                })
                .map(|name| format!("{file}: {name}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_loop_eval_bench_export_serve_and_reports_name_no_family() {
    let mut files = files_of("src/train");
    files.extend(files_of("src/run"));
    files.extend(files_of("src/run/checkpoint"));
    files.extend(files_of("src/follow"));
    files.extend(files_of("src/serve"));
    files.extend(files_of("src/report"));
    files.extend(
        ["mod.rs", "artifact.rs", "predict.rs", "generate.rs"]
            .map(|file| format!("src/export/{file}")),
    );
    files.push("src/model/onnx.rs".into());
    let found = named(&files, &FAMILIES);
    assert!(
        found.is_empty(),
        "family names found:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_training_loop_names_no_task() {
    let files: Vec<String> = [
        "trainer.rs",
        "step.rs",
        "session.rs",
        "net.rs",
        "bench.rs",
        "lr_find.rs",
        "measure.rs",
        "ranks.rs",
        "../run/checkpoint/mod.rs",
        "../run/checkpoint/write.rs",
        "../run/state.rs",
    ]
    .map(|file| format!("src/train/{file}"))
    .to_vec();
    let found = named(&files, &TASKS);
    assert!(found.is_empty(), "task names found:\n{}", found.join("\n"));
}
