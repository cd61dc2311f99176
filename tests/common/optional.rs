//! The checks the test suite makes only where an optional tool is installed, in one table:
//! what each checks, what it needs, how to install it, and the variable with which CI makes
//! it required. A test asks [`available`] before such a check; where the tool is missing the
//! check is skipped, unless its variable is set, and then the test fails instead.
//!
//! cargo hides what a passing test prints, so a skip said inside a test goes unseen. The
//! library's unit tests, which `cargo test` runs before every other test binary, include
//! this file and print [`summary`] once: every check this machine will skip, with what to
//! install.

use std::path::PathBuf;
use std::process::Command;

/// A check that runs only with `needs` installed.
pub struct Optional {
    pub checks: &'static str,
    pub needs: Need,
    pub install: &'static str,
    /// Set to anything (CI sets it), the check must run: a missing tool fails the test.
    /// `None` where the tests that need the tool fail without it anyway.
    pub required_by: Option<&'static str>,
}

pub enum Need {
    /// python3 able to import these modules (comma-separated).
    Python(&'static str),
    /// A headless Chromium on the PATH.
    Chromium,
    /// A wgpu adapter fast enough to train on: a GPU, or Mesa's Vulkan driver on the CPU.
    Wgpu,
    /// Open MPI and a build with `--features distributed`, whose MPI tests fail without
    /// `mpirun`: listed, never skipped.
    Mpi,
}

pub const NUMPY_ONNXRUNTIME: Optional = Optional {
    checks: "exported safetensors recomputed with numpy, ONNX graphs run by onnxruntime",
    needs: Need::Python("numpy, safetensors, onnxruntime"),
    install: "python3 -m pip install numpy safetensors onnxruntime",
    required_by: Some("STOKE_REQUIRE_PYTHON"),
};

pub const TENSORBOARD: Optional = Optional {
    checks: "event files read by TensorBoard's own reader",
    needs: Need::Python("tensorboard"),
    install: "python3 -m pip install tensorboard",
    required_by: Some("STOKE_REQUIRE_PYTHON"),
};

pub const PROMETHEUS: Optional = Optional {
    checks: "stoke serve's /metrics parsed by the Prometheus client",
    needs: Need::Python("prometheus_client"),
    install: "python3 -m pip install prometheus-client",
    required_by: Some("STOKE_REQUIRE_PYTHON"),
};

pub const TRANSFORMERS: Optional = Optional {
    checks: "an exported Hugging Face folder run by transformers",
    needs: Need::Python("transformers, torch"),
    install: "python3 -m pip install transformers torch",
    required_by: Some("STOKE_REQUIRE_TRANSFORMERS"),
};

pub const TIMM: Optional = Optional {
    checks: "real photos (scikit-learn's) preprocessed by timm against stoke's evaluation transform",
    needs: Need::Python("timm, torch, sklearn"),
    install: "python3 -m pip install timm torch scikit-learn",
    required_by: Some("STOKE_REQUIRE_TIMM"),
};

pub const CHROMIUM: Optional = Optional {
    checks: "the evaluation report's page rendered in headless Chromium",
    needs: Need::Chromium,
    install: "apt-get install chromium",
    required_by: Some("STOKE_REQUIRE_CHROMIUM"),
};

pub const WGPU: Optional = Optional {
    checks: "training on the wgpu backend against the CPU backends",
    needs: Need::Wgpu,
    install: "apt-get install mesa-vulkan-drivers libvulkan1",
    required_by: Some("STOKE_REQUIRE_WGPU"),
};

pub const MPI: Optional = Optional {
    checks: "data-parallel training on several ranks under mpirun",
    needs: Need::Mpi,
    install: "apt-get install openmpi-bin libopenmpi-dev libclang-dev, then \
              cargo test --release --features distributed --test distributed",
    required_by: None,
};

pub const ALL: [&Optional; 8] = [
    &NUMPY_ONNXRUNTIME,
    &TENSORBOARD,
    &PROMETHEUS,
    &TRANSFORMERS,
    &TIMM,
    &CHROMIUM,
    &WGPU,
    &MPI,
];

/// Whether `optional`'s tool is here; panics, naming what is missing, where its
/// `required_by` variable is set.
pub fn available(optional: &Optional) -> bool {
    let Some(missing) = missing(&optional.needs) else {
        return true;
    };
    if let Some(variable) = optional.required_by {
        assert!(
            std::env::var_os(variable).is_none(),
            "{variable} is set, but {missing}: {}",
            optional.checks
        );
    }
    eprintln!("skipped ({missing}): {}", optional.checks);
    false
}

/// Why `need` is not met here, or `None` when it is.
pub fn missing(need: &Need) -> Option<String> {
    match need {
        Need::Python(modules) => {
            let imported = Command::new("python3")
                .args(["-c", &format!("import {modules}")])
                .output()
                .is_ok_and(|output| output.status.success());
            (!imported).then(|| format!("python3 cannot import {modules}"))
        }
        Need::Chromium => chromium()
            .is_none()
            .then(|| "no chromium on the PATH".into()),
        Need::Wgpu => wgpu_missing(),
        Need::Mpi if !cfg!(feature = "distributed") => {
            Some("this build has no `distributed` feature".into())
        }
        Need::Mpi => {
            let found = Command::new("mpirun")
                .arg("--version")
                .output()
                .is_ok_and(|output| output.status.success());
            (!found).then(|| "no mpirun on the PATH".into())
        }
    }
}

/// The first headless browser found of those the report check can drive.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|output| output.status.success())
        })
}

/// Why wgpu cannot be tested here: no adapter opens, or the only one is OpenGL on the CPU
/// (Mesa's llvmpipe without its Vulkan driver), where compiling the shaders for one training
/// step takes over ten minutes. Asks `stoke devices --json`, as a user would.
fn wgpu_missing() -> Option<String> {
    let Some(stoke) = stoke_binary() else {
        return Some("the stoke binary is not built (run the whole suite)".into());
    };
    let runtime_dir = std::env::temp_dir().join("stoke-test-xdg");
    let _ = std::fs::create_dir_all(&runtime_dir);
    let output = Command::new(stoke)
        .args(["devices", "--json"])
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .output()
        .expect("stoke devices runs");
    assert!(output.status.success(), "stoke devices --json: {output:?}");
    let devices: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let wgpu = &devices["wgpu"];
    if let Some(why) = wgpu["error"].as_str() {
        Some(format!("no wgpu adapter ({why})"))
    } else if wgpu["software"] == true && wgpu["api"] == "Gl" {
        Some(format!(
            "the only wgpu adapter is OpenGL on the CPU ({}), too slow to test on",
            wgpu["adapter"]
        ))
    } else {
        None
    }
}

/// The `stoke` binary of this build: cargo names it to integration tests; the library's unit
/// tests find it beside their own `deps/` folder.
fn stoke_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_stoke") {
        return Some(path.into());
    }
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    Some(profile_dir.join("stoke")).filter(|path| path.is_file())
}

/// Every check this machine will skip, with why and what to install; `None` when none.
pub fn summary() -> Option<String> {
    let skipped: Vec<String> = ALL
        .iter()
        .filter_map(|optional| {
            let missing = missing(&optional.needs)?;
            Some(format!(
                "  - {} ({missing})\n    install: {}",
                optional.checks, optional.install
            ))
        })
        .collect();
    (!skipped.is_empty()).then(|| {
        format!(
            "\nThis machine skips {} of the test suite's optional checks:\n{}\n\
             (CI installs them all: .ci/run)\n",
            skipped.len(),
            skipped.join("\n")
        )
    })
}
