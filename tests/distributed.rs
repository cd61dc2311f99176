//! Data-parallel training through MPI, run with the real `mpirun` on localhost: N ranks equal
//! one process accumulating N passes, a rank killed mid-run resumes exactly, bad inputs end
//! every rank with one message. Built with `--features distributed` (CI does); the checks
//! that a default build refuses to be one of several ranks run in every build.

mod common;

#[cfg(not(feature = "distributed"))]
use common::stoke;

/// What a default build says when a launcher starts it as one of several ranks.
#[cfg(not(feature = "distributed"))]
#[test]
fn a_build_without_mpi_refuses_to_be_one_of_several_ranks() {
    for (variable, value) in [("OMPI_COMM_WORLD_SIZE", "2"), ("PMI_SIZE", "4")] {
        let output = stoke()
            .args(["train", "configs/mnist-mlp.toml"])
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("built without MPI") && stderr.contains("--features distributed"),
            "{stderr}"
        );
    }
    let output = stoke()
        .args(["train", "configs/mnist-mlp.toml", "--nproc", "2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--features distributed"));
}

#[cfg(feature = "distributed")]
mod ranks {
    use std::path::Path;
    use std::process::Output;

    use super::common::{self, read_json, stoke};

    /// `mpirun -np <ranks>` over `stoke <args>`, as root too, on as many ranks as asked
    /// whatever the core count, each rank on one thread.
    fn mpirun(ranks: usize, args: &[String]) -> Output {
        mpirun_command(ranks, args)
            .output()
            .expect("mpirun (Open MPI) is installed")
    }

    fn train_args(config: &str, sets: &[String], run_dir: &Path) -> Vec<String> {
        let mut args = vec![
            "train".to_string(),
            config.to_string(),
            "--run-dir".into(),
            run_dir.display().to_string(),
        ];
        for set in sets {
            args.extend(["--set".to_string(), set.clone()]);
        }
        args
    }

    fn text(output: &Output) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Settings for `steps` logged steps of `batch` samples per pass, a few seconds each.
    fn small(backend: &str, batch: usize, steps: usize) -> Vec<String> {
        [
            format!("run.backend={backend}"),
            "data.limit=700".into(),
            "data.workers=0".into(),
            format!("train.batch_size={batch}"),
            format!("train.max_steps={steps}"),
            "train.log_every=1".into(),
            "train.eval_every=10".into(),
            "train.eval_batch_size=64".into(),
            "train.progress=plain".into(),
            "checkpoint.every_steps=5".into(),
        ]
        .to_vec()
    }

    fn train_losses(run: &Path) -> Vec<f64> {
        common::losses(run, "train")
    }

    /// Every parameter of a run's last checkpoint, flattened in module order.
    /// Every parameter of the run's last checkpoint, in path order.
    fn weights(run: &Path) -> Vec<f32> {
        let loaded = stoke::export::load(
            run,
            &stoke::run::CheckpointChoice::Last,
            Some(stoke::config::BackendChoice::Flex),
        )
        .unwrap();
        loaded
            .model
            .parameters()
            .into_values()
            .flat_map(|data| data.to_vec::<f32>().unwrap())
            .collect()
    }

    fn assert_close(what: &str, a: &[f64], b: &[f64], relative: f64) {
        assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let scale = x.abs().max(y.abs()).max(1e-12);
            assert!(
                (x - y).abs() / scale <= relative,
                "{what}[{i}]: {x} vs {y} (relative {:.3e})",
                (x - y).abs() / scale
            );
        }
    }

    #[test]
    fn two_ranks_equal_one_process_accumulating_two_passes() {
        for (config, backend) in [
            ("configs/mnist-mlp.toml", "flex"),
            ("configs/mnist-cnn.toml", "flex"),
            ("configs/mnist-mlp.toml", "ndarray"),
            ("configs/mnist-cnn.toml", "ndarray"),
        ] {
            let batch = 16;
            // 630 training images: 19 steps of 32 and one of 22, whose second pass (or rank 1's
            // share) is short: the partial step is covered too.
            let mut sets = small(backend, batch, 20);
            let single = tempfile::tempdir().unwrap();
            let mut accumulating = sets.clone();
            accumulating.push("train.grad_accum_steps=2".into());
            let output = stoke()
                .args(train_args(config, &accumulating, single.path()))
                .env("RAYON_NUM_THREADS", "2")
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", text(&output));

            let ranks = tempfile::tempdir().unwrap();
            sets.push("train.grad_accum_steps=1".into());
            let output = mpirun(2, &train_args(config, &sets, ranks.path()));
            assert!(
                output.status.success(),
                "{config} on {backend}: {}",
                text(&output)
            );

            let what = format!("{config} on {backend}");
            let (one, two) = (train_losses(single.path()), train_losses(ranks.path()));
            assert!(one.len() >= 20, "{what}: {} train records", one.len());
            assert_close(&format!("{what}: train losses"), &one, &two, 1e-5);
            let (one, two) = (weights(single.path()), weights(ranks.path()));
            let (one, two): (Vec<f64>, Vec<f64>) = (
                one.iter().map(|&w| f64::from(w)).collect(),
                two.iter().map(|&w| f64::from(w)).collect(),
            );
            let worst = one
                .iter()
                .zip(&two)
                .map(|(a, b)| (a - b).abs() / a.abs().max(b.abs()).max(1e-3))
                .fold(0.0, f64::max);
            assert!(
                worst <= 1e-5,
                "{what}: weights differ by {worst:.3e} (relative)"
            );
            if backend == "flex" {
                // Two gradients add the same in either order, and flex's passes do not depend
                // on the thread count: the models are bitwise equal, as the README says.
                let sha =
                    |run: &Path| read_json(&run.join("summary.json"))["weights_sha256"].clone();
                assert_eq!(sha(single.path()), sha(ranks.path()), "{what}");
            }

            let world = read_json(&ranks.path().join("world.json"));
            assert_eq!(world["world_size"], 2);
            assert_eq!(world["per_rank_batch_size"], batch);
            assert_eq!(world["global_batch_size"], 2 * batch);
            let summary = read_json(&ranks.path().join("summary.json"));
            assert_eq!(summary["distributed"]["world_size"], 2);
            assert!(summary["distributed"]["all_reduce_s"].as_f64().unwrap() > 0.0);
            // Only rank 0 speaks.
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(stderr.matches("run directory:").count(), 1, "{stderr}");
        }
    }

    /// The processes still running whose command line mentions `marker`.
    fn processes_mentioning(marker: &str) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(cmdline);
            }
        }
        found
    }

    #[test]
    fn a_killed_rank_resumes_to_the_uninterrupted_weights() {
        let sets = small("flex", 16, 24);
        let reference = tempfile::tempdir().unwrap();
        let output = mpirun(
            2,
            &train_args("configs/mnist-mlp.toml", &sets, reference.path()),
        );
        assert!(output.status.success(), "{}", text(&output));

        // Kills at moments drawn from a seeded generator: (rank, step) pairs.
        let mut state: u64 = 0x5eed;
        let mut draw = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let killed = tempfile::tempdir().unwrap();
        let run = killed.path().join("run");
        let mut args = train_args("configs/mnist-mlp.toml", &sets, &run);
        let mut kills = Vec::new();
        for round in 0..2 {
            let (rank, step) = (draw(2), 6 + 8 * round + draw(6));
            kills.push((rank, step));
            let mut command = mpirun_command(2, &args);
            command.env("STOKE_FAULT", format!("kill-rank:{rank}:{step}"));
            let output = command.output().unwrap();
            assert!(
                !output.status.success(),
                "rank {rank} at step {step}: {}",
                text(&output)
            );
            assert!(
                processes_mentioning(&run.display().to_string()).is_empty(),
                "processes left after killing rank {rank} at step {step}"
            );
            args = vec!["train".into(), "--resume".into(), run.display().to_string()];
        }
        let output = mpirun(2, &args);
        assert!(
            output.status.success(),
            "kills {kills:?}: {}",
            text(&output)
        );
        let (a, b) = (
            read_json(&reference.path().join("summary.json")),
            read_json(&run.join("summary.json")),
        );
        assert_eq!(a["weights_sha256"], b["weights_sha256"], "kills {kills:?}");
        assert_eq!(train_losses(reference.path()), train_losses(&run));

        // A step's 2 passes may move from 2 ranks to 1 process accumulating 2, exactly.
        let moved = tempfile::tempdir().unwrap();
        let run = moved.path().join("run");
        let mut command = mpirun_command(2, &train_args("configs/mnist-mlp.toml", &sets, &run));
        command.env("STOKE_FAULT", "kill-rank:1:13");
        assert!(!command.output().unwrap().status.success());
        let resume = |sets: &[&str]| {
            let mut command = stoke();
            command.args(["train", "--resume"]).arg(&run);
            for set in sets {
                command.args(["--set", set]);
            }
            command.env("RAYON_NUM_THREADS", "2").output().unwrap()
        };
        let output = resume(&[]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(
            text(&output).contains("was trained on 2 rank(s) × train.grad_accum_steps = 1"),
            "{}",
            text(&output)
        );
        let output = resume(&["train.grad_accum_steps=2"]);
        assert!(output.status.success(), "{}", text(&output));
        let b = read_json(&run.join("summary.json"));
        assert_eq!(
            a["weights_sha256"], b["weights_sha256"],
            "moved to 1 process"
        );
        // The logged losses are summed in f32 in another order (per pass on one device, per
        // rank then over the ranks): equal to rounding.
        let (one, two) = (train_losses(reference.path()), train_losses(&run));
        assert_close("train losses after the move", &one, &two, 1e-6);
    }

    /// Open MPI's environment for the tests: as root too (CI runs as root), and without the
    /// cross-process reads of shared-memory transfers, which containers often forbid.
    const MPI_ENV: [(&str, &str); 3] = [
        ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
        ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
        ("OMPI_MCA_btl_vader_single_copy_mechanism", "none"),
    ];

    fn mpirun_command(ranks: usize, args: &[String]) -> std::process::Command {
        let mut command = std::process::Command::new("mpirun");
        command
            .args(["-q", "--oversubscribe", "--bind-to", "none", "-np"])
            .arg(ranks.to_string())
            .arg(assert_cmd::cargo::cargo_bin("stoke"))
            .args(args)
            .current_dir(common::repo())
            .envs(MPI_ENV)
            .env("RAYON_NUM_THREADS", "1")
            .env("XDG_RUNTIME_DIR", std::env::temp_dir());
        command
    }

    #[test]
    fn bad_inputs_end_every_rank_with_one_message() {
        let dir = tempfile::tempdir().unwrap();
        // More ranks × batch than training samples.
        let sets = ["data.limit=40".to_string(), "train.batch_size=32".into()];
        let output = mpirun(
            2,
            &train_args("configs/mnist-mlp.toml", &sets, &dir.path().join("a")),
        );
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(
            text(&output).contains("2 ranks cannot share the training split"),
            "{}",
            text(&output)
        );

        // Ranks started with different configs (MPMD: one command line per rank).
        let run = dir.path().join("b");
        let base = train_args("configs/mnist-mlp.toml", &small("flex", 16, 4), &run);
        let mut command = std::process::Command::new("mpirun");
        command
            .args(["-q", "--oversubscribe", "-np", "1"])
            .arg(assert_cmd::cargo::cargo_bin("stoke"))
            .args(&base)
            .args(["--set", "optimizer.lr=0.001", ":", "-np", "1"])
            .arg(assert_cmd::cargo::cargo_bin("stoke"))
            .args(&base)
            .args(["--set", "optimizer.lr=0.002"])
            .current_dir(common::repo())
            .envs(MPI_ENV)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir());
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("do not agree on the config"), "{stderr}");
        assert!(stderr.contains("rank 1 differs"), "{stderr}");

        // Other commands run in one process.
        let output = mpirun(2, &["check".into(), "configs/mnist-mlp.toml".into()]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(text(&output).contains("only `stoke train` runs on several"));
    }

    #[test]
    fn nproc_launches_mpirun_itself_and_the_world_size_is_kept_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let mut args = train_args("configs/mnist-mlp.toml", &small("flex", 16, 6), &run);
        args.extend(["--nproc".into(), "2".into()]);
        let output = stoke().args(&args).envs(MPI_ENV).output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(read_json(&run.join("world.json"))["world_size"], 2);

        // The run's steps were cut for 2 ranks: one process may not continue it alone, nor
        // may 2 ranks with their passes doubled.
        let output = stoke()
            .args(["train", "--resume"])
            .arg(&run)
            .args(["--set", "train.max_steps=8"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(
            text(&output).contains("was trained on 2 rank(s)"),
            "{}",
            text(&output)
        );
        let output = stoke()
            .args(["train", "--resume"])
            .arg(&run)
            .args([
                "--set",
                "train.max_steps=8",
                "--set",
                "train.grad_accum_steps=2",
            ])
            .args(["--nproc", "2"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(
            text(&output).contains("train.grad_accum_steps"),
            "{}",
            text(&output)
        );

        // Ctrl-C on the launcher stops every rank after a step, with one checkpoint saved
        // and one message saying how to continue.
        let interrupted = dir.path().join("interrupted");
        let mut args = train_args(
            "configs/mnist-mlp.toml",
            &small("flex", 16, 100_000),
            &interrupted,
        );
        args.extend(["--nproc".into(), "2".into()]);
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stoke"))
            .args(&args)
            .current_dir(common::repo())
            .env("STOKE_FAULT", "slow-steps:50")
            .envs(MPI_ENV)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let metrics = interrupted.join("metrics.jsonl");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "training did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = child.id().to_string();
        let kill = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status();
        assert!(kill.unwrap().success());
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(130), "{stderr}");
        assert_eq!(
            stderr.matches("interrupted: saved checkpoint").count(),
            1,
            "{stderr}"
        );
        assert!(stderr.contains("--nproc 2"), "{stderr}");
        let latest = std::fs::read_to_string(interrupted.join("checkpoints/latest")).unwrap();
        assert!(latest.starts_with("step-"), "{latest}");
        assert!(
            processes_mentioning(&interrupted.display().to_string()).is_empty(),
            "ranks left after Ctrl-C"
        );
    }
}
