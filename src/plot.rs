//! Charts written as SVG with plotters: titled panels with labelled axes.

use std::path::Path;

use plotters::prelude::*;

/// One bar chart: a value per labelled bar.
pub struct Bars {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub bars: Vec<(String, f64)>,
}

/// Writes `panels` one above the other into the SVG file `path`.
pub fn write_bar_panels(path: &Path, panels: &[Bars]) -> Result<(), crate::Error> {
    let failed = |err: String| crate::Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(err),
    };
    let height = 320 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(e.to_string()))?;
    for (area, panel) in root
        .split_evenly((panels.len().max(1), 1))
        .iter()
        .zip(panels)
    {
        draw_bars(area, panel).map_err(failed)?;
    }
    root.present().map_err(|e| failed(e.to_string()))
}

fn draw_bars(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    panel: &Bars,
) -> Result<(), String> {
    let count = panel.bars.len().max(1) as u32;
    let top = panel
        .bars
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((0u32..count).into_segmented(), 0.0..top)
        .map_err(|e| e.to_string())?;
    let labels: Vec<&str> = panel.bars.iter().map(|(label, _)| label.as_str()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len().min(20))
        .x_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(i) => labels
                .get(*i as usize)
                .map_or(String::new(), |l| l.to_string()),
            _ => String::new(),
        })
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(BLUE.mix(0.6).filled())
                .margin(4)
                .data(
                    panel
                        .bars
                        .iter()
                        .enumerate()
                        .map(|(i, (_, v))| (i as u32, *v)),
                ),
        )
        .map_err(|e| e.to_string())?;
    Ok(())
}
