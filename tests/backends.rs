//! The wgpu backend (on Mesa's lavapipe in CI) against the CPU backends, and `auto`'s choice.

mod common;

use common::{losses, stoke, tiny, train};

/// Whether the wgpu tests run here: an adapter fit to test on opens (`common::optional`; CI
/// installs lavapipe and requires it) and trains one step.
fn wgpu_available() -> bool {
    if !common::optional::available(&common::optional::WGPU) {
        return false;
    }
    let bench = stoke()
        .args([
            "bench",
            "configs/mnist-mlp.toml",
            "--backend",
            "wgpu",
            "--steps",
            "1",
            "--warmup",
            "1",
        ])
        .args(["--set", "data.limit=64", "--set", "train.batch_size=8"])
        .output()
        .unwrap();
    assert!(
        bench.status.success(),
        "wgpu opened an adapter but did not train:\n{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    true
}

#[test]
fn wgpu_trains_and_its_first_losses_match_the_cpu_backends() {
    if !wgpu_available() {
        return;
    }
    // Same seed, same initial weights (drawn on the CPU), no dropout: the backends differ only
    // in floating-point rounding.
    let sets = |backend: &str| {
        let mut sets = tiny(256, 3);
        sets.extend([
            format!("run.backend={backend}"),
            "train.log_every=1".into(),
            "train.batch_size=32".into(),
            "model.dropout=0.0".into(),
            "model.hidden=[64]".into(),
        ]);
        sets
    };
    let mut results = Vec::new();
    for backend in ["wgpu", "flex", "ndarray"] {
        let run = tempfile::tempdir().unwrap();
        let stderr = train("configs/mnist-mlp.toml", &sets(backend), run.path());
        assert!(stderr.contains(&format!("backend: {backend}")), "{stderr}");
        results.push((backend, losses(run.path(), "train")));
    }
    let (_, wgpu) = &results[0];
    assert_eq!(wgpu.len(), 3);
    for (backend, cpu) in &results[1..] {
        for (step, (g, c)) in wgpu.iter().zip(cpu).enumerate() {
            assert!(
                (g - c).abs() < 1e-3 * c.abs().max(1.0),
                "step {}: wgpu loss {g} vs {backend} {c}",
                step + 1
            );
        }
    }
    assert!(wgpu[2] < wgpu[0], "wgpu loss did not decrease: {wgpu:?}");
}

#[test]
fn wgpu_trains_in_each_half_type_its_adapter_computes_in_and_refuses_the_others() {
    if !wgpu_available() {
        return;
    }
    let sets = |backend: &str, precision: &str| {
        let mut sets = tiny(256, 3);
        sets.extend([
            format!("run.backend={backend}"),
            format!("train.precision={precision}"),
            "train.log_every=1".into(),
            "train.batch_size=32".into(),
            "model.dropout=0.0".into(),
            "model.hidden=[64]".into(),
        ]);
        sets
    };
    let (mut trained, mut vulkan) = (Vec::new(), false);
    for precision in ["f16-mixed", "bf16-mixed"] {
        let run = tempfile::tempdir().unwrap();
        let mut command = stoke();
        command
            .args(["train", "configs/mnist-mlp.toml", "--run-dir"])
            .arg(run.path());
        for set in sets("wgpu", precision) {
            command.args(["--set", &set]);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        vulkan |= stderr.contains(", Vulkan)");
        if !output.status.success() {
            // An adapter without the type (lavapipe has f16, not bf16) is refused up front.
            assert_eq!(output.status.code(), Some(2), "{stderr}");
            assert!(
                stderr.contains(&format!(
                    "train.precision = \"{precision}\": the wgpu backend on "
                )) && stderr.contains("cannot compute in")
                    && !stderr.contains("panicked"),
                "{stderr}"
            );
            continue;
        }
        let wgpu = losses(run.path(), "train");
        let flex_run = tempfile::tempdir().unwrap();
        train(
            "configs/mnist-mlp.toml",
            &sets("flex", precision),
            flex_run.path(),
        );
        let flex = losses(flex_run.path(), "train");
        for (step, (g, c)) in wgpu.iter().zip(&flex).enumerate() {
            assert!(
                (g - c).abs() < 1e-2 * c.abs(),
                "{precision} step {}: wgpu loss {g} vs flex {c}",
                step + 1
            );
        }
        assert!(
            wgpu[2] < wgpu[0],
            "{precision}: wgpu loss did not decrease: {wgpu:?}"
        );
        trained.push(precision);
    }
    // Vulkan adapters (lavapipe in CI, GPUs) compute in f16; OpenGL's llvmpipe does not.
    assert!(!vulkan || trained.contains(&"f16-mixed"), "{trained:?}");
}

#[test]
fn auto_never_picks_a_software_adapter_and_says_why() {
    let run = tempfile::tempdir().unwrap();
    let stderr = train(
        "configs/mnist-mlp.toml",
        &[tiny(100, 1), vec!["run.backend=auto".into()]].concat(),
        run.path(),
    );
    let line = stderr
        .lines()
        .find(|line| line.starts_with("backend: "))
        .expect("the backend line");
    if line.starts_with("backend: wgpu") {
        // A machine with a real GPU: auto takes it, and it is not a CPU adapter.
        assert!(
            line.contains("(auto: a GPU adapter opened)") && !line.contains("Cpu"),
            "{line}"
        );
        return;
    }
    // Without a GPU, auto falls back to run.cpu_backend (flex) and says why.
    assert!(line.starts_with("backend: flex (auto: "), "{line}");
    assert!(
        line.contains("emulates a GPU on the CPU") || line.contains("no GPU adapter found"),
        "{line}"
    );

    let run = tempfile::tempdir().unwrap();
    let stderr = train(
        "configs/mnist-mlp.toml",
        &[
            tiny(100, 1),
            vec!["run.backend=auto".into(), "run.cpu_backend=ndarray".into()],
        ]
        .concat(),
        run.path(),
    );
    assert!(stderr.contains("backend: ndarray (auto: "), "{stderr}");
}
