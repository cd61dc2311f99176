//! Every command that writes a file or folder takes a bare name relative to the working
//! directory (`--report r.json`, `--out model`), run from a directory other than the
//! repository: the name's parent is then the empty path, which the atomic writes must read as
//! `.` (they once tried to fsync "" and failed after writing).

mod common;

use std::path::Path;

use common::{read_json, stdout_of, stoke, tiny};

/// `stoke args...` run in `dir`.
fn stoke_in(dir: &Path, args: &[&str]) -> String {
    stdout_of(stoke().current_dir(dir).args(args))
}

#[test]
fn every_writing_command_takes_a_bare_name_in_another_directory() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    let config = common::repo().join("configs/mnist-mlp.toml");
    let config = config.to_str().unwrap();
    let mnist = common::repo().join("datasets/mnist");
    let mnist = mnist.to_str().unwrap();
    let mut sets: Vec<String> = tiny(300, 4);
    sets.push(format!("data.path={mnist}"));
    sets.push("model.hidden=[16]".into());
    let set_args: Vec<&str> = sets.iter().flat_map(|s| ["--set", s.as_str()]).collect();

    // train --run-dir
    for run in ["run", "other"] {
        let mut args = vec!["train", config, "--run-dir", run];
        args.extend(&set_args);
        stoke_in(here, &args);
        assert!(here.join(run).join("summary.json").is_file(), "{run}");
    }

    // eval --report
    stoke_in(here, &["eval", "run", "--report", "report"]);
    assert!(here.join("report/index.html").is_file());
    assert!(here.join("report/report.json").is_file());

    // export --out, both formats
    stoke_in(here, &["export", "run", "--out", "model"]);
    assert!(here.join("model/manifest.json").is_file());
    stoke_in(
        here,
        &["export", "run", "--out", "onnx", "--format", "onnx"],
    );
    assert!(here.join("onnx/model.onnx").is_file());

    // lr-find --out, and its default, the working directory
    let mut args = vec!["lr-find", config, "--steps", "8", "--out", "sweep"];
    args.extend(&set_args);
    stoke_in(here, &args);
    assert!(here.join("sweep/lr-find.svg").is_file());
    let mut args = vec!["lr-find", config, "--steps", "8"];
    args.extend(&set_args);
    stoke_in(here, &args);
    assert!(here.join("lr-find.png").is_file());

    // runs compare --out
    stoke_in(
        here,
        &["runs", "compare", "run", "other", "--out", "compared"],
    );
    assert!(
        std::fs::read_dir(here.join("compared"))
            .unwrap()
            .any(|entry| entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".svg"))
    );

    // data inspect: the default report name, and a bare --report
    stoke_in(here, &["data", "inspect", mnist]);
    assert_eq!(
        read_json(&here.join("data-report.json"))["dataset"],
        "mnist"
    );
    stoke_in(here, &["data", "inspect", mnist, "--report", "r.json"]);
    assert!(here.join("r.json").is_file());
    assert!(here.join("r.svg").is_file());

    // data synth and data pack --out
    let synth = [
        "data",
        "synth",
        "--out",
        "synth",
        "--records",
        "200",
        "--test-records",
        "50",
    ];
    stoke_in(here, &[&synth[..], &["--from", mnist]].concat());
    assert!(here.join("synth/shards.json").is_file());
    let mut args = vec!["data", "pack", config, "--out", "packed"];
    args.extend(&set_args);
    stoke_in(here, &args);
    assert!(here.join("packed/shards.json").is_file());
}
