//! Using an exported stoke model from your own Rust program: open the artifact, classify
//! image files, print the most likely class of each.
//!
//!     stoke export runs/<run> --out models/mnist-mlp
//!     cargo run --release --example predict -- models/mnist-mlp datasets/mnist/samples/7.png
//!
//! `stoke::export::open` also takes a run directory (its best checkpoint), and
//! `classify_texts` / `generate` serve text classifiers and language models the same way.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use stoke::config::BackendChoice;
use stoke::export::{self, CheckpointChoice};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(model), images) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: predict <artifact> <image>...");
        return ExitCode::from(2);
    };
    match run(&model, &images) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

fn run(model: &Path, images: &[PathBuf]) -> Result<(), stoke::Error> {
    // Flex is the CPU backend; BackendChoice::Auto would take a GPU when there is one.
    let loaded = export::open(model, &CheckpointChoice::Best, Some(BackendChoice::Flex))?;
    for answer in export::classify_images(&loaded, images, 64, 1)? {
        match answer {
            Ok(prediction) => {
                let best = &prediction.top[0];
                println!(
                    "{}: {} ({:.1} %)",
                    prediction.input,
                    best.label,
                    100.0 * best.probability
                );
            }
            Err(failed) => println!("{}: {}", failed.input, failed.error),
        }
    }
    Ok(())
}
