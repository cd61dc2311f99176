//! `stoke runs`: list, show and compare run directories.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::Error;
use crate::run::runs::{self, RunInfo};
use crate::train::format_duration;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One line per run: name, model, status, best validation metric, steps, wall time.
    List {
        /// Where the runs are (run.runs_dir).
        #[arg(long, default_value = "runs", value_name = "DIR")]
        runs_dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One run in detail: status, metrics, best checkpoint, files.
    Show { run: PathBuf },
    /// Runs side by side: the config keys they differ in, their metrics, and their
    /// validation curves overlaid (SVG and PNG in --out).
    Compare {
        #[arg(required = true, num_args = 2..)]
        runs: Vec<PathBuf>,
        /// Where to write the overlaid curves.
        #[arg(long, default_value = ".", value_name = "DIR")]
        out: PathBuf,
    },
}

fn metric(value: &Option<(String, f64)>) -> String {
    match value {
        Some((name, v)) if name == "accuracy" => format!("{:.2} % acc", v * 100.0),
        Some((name, v)) => format!("{v:.3} {name}"),
        None => "-".into(),
    }
}

pub fn run(command: RunsCommand) -> Result<(), Error> {
    match command {
        RunsCommand::List { runs_dir, json } => {
            let runs = runs::list(&runs_dir)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&runs).expect("runs serialise")
                );
                return Ok(());
            }
            if runs.is_empty() {
                println!("no runs in {}", runs_dir.display());
                return Ok(());
            }
            println!(
                "{:<40} {:<16} {:<11} {:>16} {:>8} {:>9}",
                "run", "model", "status", "best valid", "steps", "time"
            );
            for run in &runs {
                println!(
                    "{:<40} {:<16} {:<11} {:>16} {:>8} {:>9}",
                    run.name,
                    run.model,
                    run.status,
                    metric(&run.best),
                    run.steps,
                    format_duration(run.wall_time_s)
                );
            }
        }
        RunsCommand::Show { run } => show(&runs::open(&run)?),
        RunsCommand::Compare { runs, out } => {
            let runs: Vec<RunInfo> = runs
                .iter()
                .map(|path| runs::open(path))
                .collect::<Result<_, _>>()?;
            compare(&runs, &out)?;
        }
    }
    Ok(())
}

fn show(run: &RunInfo) {
    println!("run       {}", run.path.display());
    println!("model     {}", run.model);
    println!("status    {}", run.status);
    if let Some(error) = &run.error {
        println!("error     {error}");
    }
    println!(
        "steps     {} in {}",
        run.steps,
        format_duration(run.wall_time_s)
    );
    println!("best      {} (validation)", metric(&run.best));
    println!("test      {}", metric(&run.test));
    if let Some(summary) = &run.summary {
        if let Some(best) = &summary.best {
            println!(
                "best ckpt {} (step {}, epoch {})",
                best.name, best.step, best.epoch
            );
        }
        println!("stopped   {}", summary.stopped);
        println!("speed     {:.0} samples/s", summary.train_samples_per_s);
    }
    for file in [
        "config.toml",
        "metrics.jsonl",
        "metrics.csv",
        "plots",
        "summary.json",
    ] {
        let path = run.path.join(file);
        if path.exists() {
            println!("file      {}", path.display());
        }
    }
}

fn compare(runs: &[RunInfo], out: &Path) -> Result<(), Error> {
    let differences = runs::config_differences(runs);
    let width = runs
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .clamp(8, 40);
    println!("config differences:");
    if differences.is_empty() {
        println!("  (none)");
    }
    for (key, values) in &differences {
        println!("  {key}");
        for (run, value) in runs.iter().zip(values) {
            println!("    {:<width$} {value}", run.name);
        }
    }
    println!();
    println!(
        "{:<width$} {:<11} {:>8} {:>16} {:>16} {:>9}",
        "run", "status", "steps", "best valid", "test", "time"
    );
    for run in runs {
        println!(
            "{:<width$} {:<11} {:>8} {:>16} {:>16} {:>9}",
            run.name,
            run.status,
            run.steps,
            metric(&run.best),
            metric(&run.test),
            format_duration(run.wall_time_s)
        );
    }
    if let Some(classes) = runs::per_class_f1(runs) {
        print_per_class(runs, &classes, width);
    }
    for file in runs::write_overlays(runs, out)? {
        eprintln!("wrote {}", file.display());
    }
    Ok(())
}

/// Per-class F1 from the runs' reports, each run after the first with its change from it.
fn print_per_class(runs: &[RunInfo], classes: &[(String, Vec<Option<f64>>)], width: usize) {
    println!();
    let splits: Vec<String> = runs
        .iter()
        .map(|run| {
            run.per_class
                .as_ref()
                .map_or("-".into(), |p| p.split.clone())
        })
        .collect();
    println!(
        "per-class F1 (from each run's report/report.json; splits: {}), change against {}:",
        splits.join(", "),
        runs[0].name
    );
    let class_width = classes
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 30);
    let column = width.clamp(18, 24);
    print!("  {:<class_width$}", "class");
    for run in runs {
        print!(" {:>column$}", truncate(&run.name, column));
    }
    println!();
    for (class, values) in classes {
        print!("  {:<class_width$}", truncate(class, class_width));
        let first = values[0];
        for (index, value) in values.iter().enumerate() {
            let cell = match (value, first) {
                (None, _) => "-".to_string(),
                (Some(v), Some(base)) if index > 0 => format!("{v:.4} ({:+.4})", v - base),
                (Some(v), _) => format!("{v:.4}"),
            };
            print!(" {cell:>column$}");
        }
        println!();
    }
}

fn truncate(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}
