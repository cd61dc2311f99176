//! `index.html`: the report as one self-contained page. Charts are inline SVG, the image grid
//! a `data:` URL; no script and nothing from the network, so the file can be mailed or
//! archived alone.

use std::fmt::Write;
use std::path::Path;

use base64::Engine;

use super::{Report, errors};
use crate::run::plots::{FOLLOW_PLOT, PLOTS_DIR, follow_rounds};

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.meta { color: #555; }
table { border-collapse: collapse; margin: 0.6rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
tr.flagged td { background: #fde2e2; }
svg, img { max-width: 100%; height: auto; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
.note { color: #555; font-size: 0.95rem; }
";

/// The page for `report`, whose charts were written into `dir` (with the image grid of the
/// worst errors when `grid`).
pub(super) fn render(report: &Report, dir: &Path, grid: bool) -> String {
    let mut html = String::new();
    let title = format!(
        "Evaluation report: {}",
        report.run_dir.file_name().map_or_else(
            || report.run_dir.display().to_string(),
            |name| name.to_string_lossy().into_owned()
        )
    );
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n\
         <p class=\"meta\">run <code>{}</code>, checkpoint <code>{}</code>, {} split</p>\n",
        escape(&title),
        escape(&title),
        escape(&report.run_dir.display().to_string()),
        escape(&report.checkpoint),
        escape(&report.split)
    );
    summary(&mut html, report);
    if let Some(classification) = &report.classification {
        per_class(&mut html, classification);
        section(&mut html, "confusion", "Confusion matrix");
        html.push_str(&inline_svg(&dir.join("confusion.svg")));
        html.push_str("<h3>Most frequent confusions</h3>\n");
        table(
            &mut html,
            &["true class", "predicted", "count"],
            classification.top_confusions.iter().map(|c| {
                vec![
                    c.true_class.clone(),
                    c.predicted.clone(),
                    c.count.to_string(),
                ]
            }),
        );
        html.push_str("</section>\n");
        calibration(&mut html, classification, dir);
        slices(&mut html, report);
        worst_errors(&mut html, report, dir, grid);
    }
    if let Some(language) = &report.language_model {
        section(
            &mut html,
            "language-model",
            "Loss by position and the hardest tokens",
        );
        html.push_str(&inline_svg(&dir.join("loss-by-position.svg")));
        let _ = writeln!(
            html,
            "<h3>Tokens with the highest mean loss</h3>\n<p class=\"note\">Among tokens seen \
             at least {} times as targets.</p>",
            language.min_count
        );
        table(
            &mut html,
            &["token", "id", "count", "mean loss"],
            language.highest_loss_tokens.iter().map(|t| {
                vec![
                    format!("{:?}", t.token),
                    t.id.to_string(),
                    t.count.to_string(),
                    format!("{:.3}", t.mean_loss),
                ]
            }),
        );
        html.push_str("</section>\n");
    }
    if let Some(regression) = &report.regression {
        per_target(&mut html, regression);
    }
    if let Some(multi_label) = &report.multi_label {
        per_label(&mut html, multi_label);
    }
    curves(&mut html, &report.run_dir);
    following(&mut html, &report.run_dir);
    section(&mut html, "config", "Config");
    match std::fs::read_to_string(report.run_dir.join("config.toml")) {
        Ok(config) => {
            let _ = writeln!(html, "<pre>{}</pre>", escape(&config));
        }
        Err(_) => html.push_str("<p class=\"note\">The run has no config.toml.</p>\n"),
    }
    html.push_str("</section>\n");
    data_report(&mut html, report);
    html.push_str("</body>\n</html>\n");
    html
}

fn per_target(html: &mut String, report: &super::RegressionReport) {
    section(html, "per-target", "Per target");
    let _ = writeln!(
        html,
        "<p class=\"note\">{} rows, errors in each target's own units; bias is the mean of \
         predicted − true.</p>",
        report.rows
    );
    table(
        html,
        &[
            "target",
            "MAE",
            "RMSE",
            "R²",
            "bias",
            "|error| p50",
            "p90",
            "p99",
            "std",
        ],
        report.targets.iter().map(|t| {
            let [p50, p90, p99] = t.absolute_error_percentiles;
            vec![
                t.target.clone(),
                format!("{:.4}", t.mae),
                format!("{:.4}", t.rmse),
                format!("{:.4}", t.r2),
                format!("{:.4}", t.bias),
                format!("{p50:.4}"),
                format!("{p90:.4}"),
                format!("{p99:.4}"),
                format!("{:.4}", t.std),
            ]
        }),
    );
    html.push_str("<h3>Rows predicted worst</h3>\n");
    table(
        html,
        &["row", "true → predicted"],
        report.worst_rows.iter().map(|row| {
            let values: Vec<String> = row
                .values
                .iter()
                .map(|(actual, predicted)| format!("{actual:.4} → {predicted:.4}"))
                .collect();
            vec![
                row.location
                    .clone()
                    .unwrap_or_else(|| row.index.to_string()),
                values.join(", "),
            ]
        }),
    );
    html.push_str("</section>\n");
}

fn per_label(html: &mut String, report: &super::MultiLabelReport) {
    section(html, "per-label", "Per label");
    let _ = writeln!(
        html,
        "<p class=\"note\">A label is predicted present at probability {} or above. \
         Micro-F1 {:.4}, macro-F1 {:.4}.</p>",
        report.threshold, report.micro_f1, report.macro_f1
    );
    table(
        html,
        &["label", "precision", "recall", "F1", "support"],
        report.labels.iter().map(|l| {
            vec![
                l.label.clone(),
                format!("{:.4}", l.precision),
                format!("{:.4}", l.recall),
                format!("{:.4}", l.f1),
                l.support.to_string(),
            ]
        }),
    );
    html.push_str("</section>\n");
}

fn section(html: &mut String, id: &str, heading: &str) {
    let _ = writeln!(html, "<section id=\"{id}\">\n<h2>{}</h2>", escape(heading));
}

fn summary(html: &mut String, report: &Report) {
    section(html, "summary", "Summary");
    let rows = report
        .eval
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, value)| value.is_number())
        .map(|(key, value)| {
            let number = value.as_f64().unwrap_or(f64::NAN);
            let shown = if value.is_u64() {
                value.to_string()
            } else {
                format!("{number:.4}")
            };
            vec![key.replace('_', " "), shown]
        });
    table(html, &["metric", "value"], rows);
    html.push_str("</section>\n");
}

fn per_class(html: &mut String, report: &super::ClassificationReport) {
    section(html, "per-class", "Per class");
    let _ = writeln!(
        html,
        "<p>{} examples, accuracy {:.4}.</p>",
        report.samples, report.accuracy
    );
    let row = |name: &str, p: f64, r: f64, f: f64, support: String| {
        vec![
            name.to_string(),
            format!("{p:.4}"),
            format!("{r:.4}"),
            format!("{f:.4}"),
            support,
        ]
    };
    let rows = report
        .per_class
        .iter()
        .map(|m| row(&m.class, m.precision, m.recall, m.f1, m.support.to_string()))
        .chain([
            row(
                "macro average",
                report.macro_avg.precision,
                report.macro_avg.recall,
                report.macro_avg.f1,
                report.samples.to_string(),
            ),
            row(
                "weighted average",
                report.weighted_avg.precision,
                report.weighted_avg.recall,
                report.weighted_avg.f1,
                report.samples.to_string(),
            ),
        ]);
    table(
        html,
        &["class", "precision", "recall", "F1", "support"],
        rows,
    );
    html.push_str("</section>\n");
}

fn calibration(html: &mut String, report: &super::ClassificationReport, dir: &Path) {
    let calibration = &report.calibration;
    section(html, "calibration", "Calibration");
    let mean = |value: Option<f64>| value.map_or("none".into(), |v| format!("{v:.4}"));
    let _ = writeln!(
        html,
        "<p>Expected calibration error <b>{:.4}</b> over {}. Mean confidence of right \
         answers {}, of wrong answers {}.</p>",
        calibration.ece,
        escape(calibration.binning),
        mean(calibration.mean_confidence_correct),
        mean(calibration.mean_confidence_wrong)
    );
    html.push_str(&inline_svg(&dir.join("reliability.svg")));
    html.push_str("</section>\n");
}

fn slices(html: &mut String, report: &Report) {
    section(html, "slices", "Slices");
    let Some(slices) = &report.slices else {
        html.push_str(
            "<p class=\"note\">Not sliced. <code>stoke eval RUN --slice-by FIELD</code> (or \
             <code>eval.slice_by</code> in the config) groups the examples by a field of the \
             records and flags a group the model fails.</p>\n</section>\n",
        );
        return;
    };
    let flagged = slices.slices.iter().filter(|s| s.flagged).count();
    let _ = writeln!(
        html,
        "<p>By <b>{}</b>: {} slices, <b>{flagged} flagged</b> (accuracy interval wholly below \
         the rest's). Accuracy intervals: {}; macro-F1 intervals: 95 % percentile \
         bootstrap, 1000 resamples. {} examples have no value.{}</p>",
        escape(&slices.attribute),
        slices.slices.len(),
        escape(slices.interval),
        slices.without_value,
        if slices.slices_left_out > 0 {
            format!(" {} smaller slices are left out.", slices.slices_left_out)
        } else {
            String::new()
        }
    );
    html.push_str(
        "<table>\n<tr><th class=\"text\">value</th><th>samples</th><th>accuracy</th>\
         <th>95 % interval</th><th>macro-F1</th><th>95 % interval</th><th>rest accuracy</th>\
         <th>rest interval</th><th>gap</th><th class=\"text\">flag</th></tr>\n",
    );
    for slice in &slices.slices {
        let interval = |i: [f64; 2]| format!("{:.3} – {:.3}", i[0], i[1]);
        let _ = writeln!(
            html,
            "<tr{}><td class=\"text\">{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{:.4}</td>\
             <td>{}</td><td>{:.4}</td><td>{}</td><td>{:+.4}</td><td class=\"text\">{}</td></tr>",
            if slice.flagged {
                " class=\"flagged\""
            } else {
                ""
            },
            escape(&slice.value),
            slice.metrics.samples,
            slice.metrics.accuracy,
            interval(slice.metrics.accuracy_interval),
            slice.metrics.macro_f1,
            slice
                .metrics
                .macro_f1_interval
                .map_or(String::new(), interval),
            slice.rest.accuracy,
            interval(slice.rest.accuracy_interval),
            slice.accuracy_gap,
            if slice.flagged { "below the rest" } else { "" }
        );
    }
    html.push_str("</table>\n</section>\n");
}

fn worst_errors(html: &mut String, report: &Report, dir: &Path, grid: bool) {
    section(html, "errors", "Most confidently wrong");
    if report.worst_errors.is_empty() {
        html.push_str("<p>No example was misclassified.</p>\n</section>\n");
        return;
    }
    if grid && let Ok(png) = std::fs::read(dir.join(errors::GRID_FILE)) {
        let _ = writeln!(
            html,
            "<img alt=\"the most confidently wrong images\" src=\"data:image/png;base64,{}\">",
            base64::engine::general_purpose::STANDARD.encode(png)
        );
    }
    let ids = report.worst_errors.iter().any(|e| e.id.is_some());
    let texts = report.worst_errors.iter().any(|e| e.text.is_some());
    let rows = report.worst_errors.iter().enumerate().map(|(rank, e)| {
        let mut row = vec![(rank + 1).to_string()];
        if ids {
            row.push(e.id.clone().unwrap_or_default());
        }
        row.extend([
            e.location
                .clone()
                .unwrap_or_else(|| format!("#{}", e.index)),
            e.true_class.clone(),
            e.predicted.clone(),
            format!("{:.4}", e.confidence),
        ]);
        if texts {
            row.push(e.text.clone().unwrap_or_default());
        }
        row
    });
    let mut headers = vec!["rank"];
    if ids {
        headers.push("id");
    }
    headers.extend(["where", "true", "predicted", "confidence"]);
    if texts {
        headers.push("text");
    }
    table(html, &headers, rows);
    html.push_str("</section>\n");
}

fn curves(html: &mut String, run_dir: &Path) {
    section(html, "curves", "Training curves");
    let plots = run_dir.join(PLOTS_DIR);
    let mut files: Vec<_> = std::fs::read_dir(&plots)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "svg"))
        .filter(|path| path.file_stem().is_none_or(|stem| stem != FOLLOW_PLOT))
        .collect();
    files.sort();
    if files.is_empty() {
        html.push_str("<p class=\"note\">The run has no plots.</p>\n");
    }
    for file in files {
        html.push_str(&inline_svg(&file));
    }
    html.push_str("</section>\n");
}

/// A followed run's rounds: each shard's score before training on it, the candidate's
/// holdout figure and the gate's decision with its reason.
fn following(html: &mut String, run_dir: &Path) {
    let rounds = match follow_rounds(run_dir) {
        Ok(rounds) if rounds.is_empty() => return,
        Ok(rounds) => rounds,
        Err(err) => {
            section(html, "following", "Continual training");
            let _ = writeln!(
                html,
                "<p class=\"note\">{}</p>\n</section>",
                escape(&err.to_string())
            );
            return;
        }
    };
    section(html, "following", "Continual training");
    let metric = rounds[0].decision.metric.clone();
    let promoted = rounds.iter().filter(|r| r.decision.promoted).count();
    let _ = writeln!(
        html,
        "<p>{} shards taken, {promoted} candidates promoted. A shard's {metric} before training \
         on it is how the model did on data it had not seen; the gate compares each candidate's \
         holdout {metric} with the promoted version's.</p>",
        rounds.len()
    );
    html.push_str(&inline_svg(
        &run_dir.join(PLOTS_DIR).join(format!("{FOLLOW_PLOT}.svg")),
    ));
    let figure = |value: Option<f64>| value.map_or_else(|| "–".to_string(), |v| format!("{v:.4}"));
    table(
        html,
        &[
            "shard",
            "records",
            "step",
            &format!("{metric} before"),
            &format!("holdout {metric}"),
            "promoted version's",
            "decision",
        ],
        rounds.iter().map(|round| {
            let decision = &round.decision;
            vec![
                round.shard.clone(),
                round.records.to_string(),
                round.step.to_string(),
                figure(round.before.get(&metric)),
                figure(Some(decision.candidate)),
                figure(decision.current),
                decision.reason.clone(),
            ]
        }),
    );
    html.push_str("</section>\n");
}

fn data_report(html: &mut String, report: &Report) {
    section(html, "data", "Data report");
    let Some(path) = &report.data_report else {
        html.push_str(
            "<p class=\"note\">No data report was found. <code>stoke data inspect PATH --report \
             RUN/data-report.json</code> writes one (classes, lengths, duplicates, leaks, \
             unreadable records), and the next report links it.</p>\n</section>\n",
        );
        return;
    };
    let shown = escape(&path.display().to_string());
    let link = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
    let _ = writeln!(
        html,
        "<p><a href=\"file://{}\">{shown}</a></p>",
        escape(&link.display().to_string())
    );
    let problems: Vec<String> = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|value| value.get("problems").cloned())
        .and_then(|problems| serde_json::from_value(problems).ok())
        .unwrap_or_default();
    if problems.is_empty() {
        html.push_str("<p>It lists no problems.</p>\n");
    } else {
        html.push_str("<p>Problems it lists:</p>\n<ul>\n");
        for problem in problems {
            let _ = writeln!(html, "<li>{}</li>", escape(&problem));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</section>\n");
}

fn table(html: &mut String, headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    // Numbers align right, text left; a column is as its first row.
    let is_text = |column: usize, cell: &str| column == 0 || cell.parse::<f64>().is_err();
    let aligned = |text: bool| if text { " class=\"text\"" } else { "" };
    html.push_str("<table>\n<tr>");
    for (column, header) in headers.iter().enumerate() {
        let first = rows.first().and_then(|row| row.get(column));
        let text = first.is_none_or(|cell| is_text(column, cell));
        let _ = write!(html, "<th{}>{}</th>", aligned(text), escape(header));
    }
    html.push_str("</tr>\n");
    for row in &rows {
        html.push_str("<tr>");
        for (column, cell) in row.iter().enumerate() {
            let _ = write!(
                html,
                "<td{}>{}</td>",
                aligned(is_text(column, cell)),
                escape(cell)
            );
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
}

/// An SVG file's `<svg>` element, to place in the page (nothing if it cannot be read).
fn inline_svg(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    match text.find("<svg") {
        Some(start) => format!("<figure>{}</figure>\n", &text[start..]),
        None => String::new(),
    }
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}
