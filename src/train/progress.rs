//! What a person watching a run sees: a progress bar per epoch on a terminal, one plain line
//! per log interval otherwise (CI logs, files). Everything goes to stderr.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::ProgressMode;

use crate::run::metrics::MetricRecord;

pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    epochs: usize,
    epoch: usize,
    batches: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Plain,
    Quiet,
    /// Nothing at all: ranks other than 0 of a distributed run.
    Silent,
}

impl Progress {
    pub fn new(mode: ProgressMode, epochs: usize) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => Mode::Bar,
            ProgressMode::Auto | ProgressMode::Plain => Mode::Plain,
            ProgressMode::Bar => Mode::Bar,
            ProgressMode::Quiet => Mode::Quiet,
        };
        Self {
            mode,
            bar: None,
            epochs,
            epoch: 0,
            batches: 0,
        }
    }

    /// Shows nothing, not even [`say`](Self::say)'s lines.
    pub fn silent(epochs: usize) -> Self {
        Self {
            mode: Mode::Silent,
            bar: None,
            epochs,
            epoch: 0,
            batches: 0,
        }
    }

    /// A line that is always shown (run directory, backend, results), unless silent.
    pub fn say(&self, line: &str) {
        if self.mode == Mode::Silent {
            return;
        }
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    pub fn start_epoch(&mut self, epoch: usize, batches: usize, done: usize) {
        self.epoch = epoch;
        self.batches = batches;
        if self.mode == Mode::Bar {
            let bar = ProgressBar::with_draw_target(
                Some(batches as u64),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} · {elapsed} (ETA {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
            bar.set_position(done as u64);
            bar.enable_steady_tick(Duration::from_millis(500));
            self.bar = Some(bar);
        }
    }

    pub fn advance(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub fn train_interval(&self, record: &MetricRecord, batch_in_epoch: usize, eta_s: f64) {
        let summary = format!(
            "{} · lr {:.2e} · {:.0} samples/s{}",
            quality(record),
            record.lr,
            record.samples_per_s,
            record
                .tokens_per_s
                .map_or(String::new(), |rate| format!(" · {rate:.0} tokens/s"))
        );
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_message(summary);
                }
            }
            Mode::Plain => eprintln!(
                "epoch {}/{} · step {} · batch {batch_in_epoch}/{} · {summary} · eta {}",
                self.epoch,
                self.epochs,
                record.step,
                self.batches,
                format_duration(eta_s)
            ),
            Mode::Quiet | Mode::Silent => {}
        }
    }

    pub fn evaluation(&self, record: &MetricRecord, note: &str) {
        if self.mode == Mode::Quiet {
            return;
        }
        self.say(&format!(
            "epoch {}/{} · step {} · {} {}{note}",
            record.epoch,
            self.epochs,
            record.step,
            record.split,
            quality(record)
        ));
    }

    pub fn finish_epoch(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// The loss, with the task's own metrics.
fn quality(record: &MetricRecord) -> String {
    let mut text = format!("loss {:.4}", record.loss);
    let shown = [
        ("accuracy", "acc", true),
        ("top_k_accuracy", "top-k", true),
        ("macro_f1", "macro-F1", false),
        ("micro_f1", "micro-F1", false),
        ("exact_match", "exact", true),
        ("perplexity", "ppl", false),
        ("bits_per_char", "bits/char", false),
        ("mae", "MAE", false),
        ("rmse", "RMSE", false),
        ("r2", "R²", false),
    ];
    for (name, label, percent) in shown {
        match (record.get(name), percent) {
            (Some(value), true) => text.push_str(&format!(" · {label} {:.2}%", value * 100.0)),
            (Some(value), false) => text.push_str(&format!(" · {label} {value:.4}")),
            (None, _) => {}
        }
    }
    text
}

pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let total = seconds.round() as u64;
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{secs:02}")
    } else {
        format!("{minutes}:{secs:02}")
    }
}
