//! Charts written with plotters: titled, with labelled axes, as SVG and PNG. Text is drawn
//! with an embedded DejaVu Sans, so PNGs need no system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded font is valid"));
    });
}

/// One bar chart: a value per labelled bar.
pub struct Bars {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub bars: Vec<(String, f64)>,
}

/// A line chart of one or more named series of (x, y) points.
pub struct Lines {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

fn failed(path: &Path, detail: String) -> crate::Error {
    crate::Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(detail),
    }
}

/// Writes `panels` one above the other into the SVG file `path`.
pub fn write_bar_panels(path: &Path, panels: &[Bars]) -> Result<(), crate::Error> {
    register_font();
    let height = 320 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(path, e.to_string()))?;
    for (area, panel) in root
        .split_evenly((panels.len().max(1), 1))
        .iter()
        .zip(panels)
    {
        draw_bars(area, panel).map_err(|e| failed(path, e))?;
    }
    root.present().map_err(|e| failed(path, e.to_string()))
}

/// Writes `chart` as `<stem>.svg` and `<stem>.png`; returns both paths.
pub fn write_lines(stem: &Path, chart: &Lines) -> Result<[PathBuf; 2], crate::Error> {
    register_font();
    const SIZE: (u32, u32) = (900, 500);
    let svg = stem.with_extension("svg");
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw_lines(&root, chart).map_err(|e| failed(&svg, e))?;
        root.present().map_err(|e| failed(&svg, e.to_string()))?;
    }
    let png = stem.with_extension("png");
    let mut pixels = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        draw_lines(&root, chart).map_err(|e| failed(&png, e))?;
        root.present().map_err(|e| failed(&png, e.to_string()))?;
    }
    let image = image::RgbImage::from_raw(SIZE.0, SIZE.1, pixels).expect("a full frame");
    let mut encoded = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut encoded),
            image::ImageFormat::Png,
        )
        .map_err(|e| failed(&png, e.to_string()))?;
    crate::files::write_atomic(&png, &encoded)?;
    Ok([svg, png])
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &Lines,
) -> Result<(), String> {
    area.fill(&WHITE).map_err(|e| e.to_string())?;
    let points = chart.series.iter().flat_map(|(_, points)| points.iter());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x_min, x_max) = (x_min.min(x), x_max.max(x));
        (y_min, y_max) = (y_min.min(y), y_max.max(y));
    }
    if x_min > x_max {
        (x_min, x_max, y_min, y_max) = (0.0, 1.0, 0.0, 1.0);
    }
    let x_pad = ((x_max - x_min) * 0.02).max(0.5);
    let y_pad = ((y_max - y_min) * 0.05).max(y_max.abs() * 0.05).max(1e-9);
    let mut context = ChartBuilder::on(area)
        .caption(&chart.title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x_min - x_pad..x_max + x_pad, y_min - y_pad..y_max + y_pad)
        .map_err(|e| e.to_string())?;
    context
        .configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format_value(*y))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, (name, points)) in chart.series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let finite: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let style = ShapeStyle::from(&color).stroke_width(2);
        let drawn = if finite.len() == 1 {
            context
                .draw_series(finite.iter().map(|&p| Circle::new(p, 4, style.filled())))
                .map_err(|e| e.to_string())?
        } else {
            context
                .draw_series(LineSeries::new(finite, style))
                .map_err(|e| e.to_string())?
        };
        drawn.label(name.as_str()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
        });
    }
    if chart.series.len() > 1 {
        // Out of the way of the curves' ends: below rising curves, above falling ones.
        let rising = chart
            .series
            .first()
            .and_then(|(_, p)| Some(p.last()?.1 > p.first()?.1))
            .unwrap_or(false);
        let corner = if rising {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        };
        context
            .configure_series_labels()
            .position(corner)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Axis values with as many digits as their size needs: 0.25, 1.2e-4, 15000.
fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.1e}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
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
        .caption(&panel.title, (FAMILY, 20))
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
        .label_style((FAMILY, 14))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(COLORS[0].mix(0.7).filled())
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
