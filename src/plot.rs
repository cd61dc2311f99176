//! Charts written with plotters: titled, with labelled axes, as SVG and PNG. Text is drawn
//! with an embedded DejaVu Sans, so PNGs need no system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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
    write_chart(stem, (900, 500), chart)
}

/// A chart that draws itself on any plotters backend.
pub trait Chart {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

impl Chart for Lines {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        draw_lines(area, self)
    }
}

/// Writes `chart` at `size` as `<stem>.svg` and `<stem>.png`; returns both paths.
pub fn write_chart(
    stem: &Path,
    size: (u32, u32),
    chart: &impl Chart,
) -> Result<[PathBuf; 2], crate::Error> {
    register_font();
    let svg = stem.with_extension("svg");
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        chart.draw(&root).map_err(|e| failed(&svg, e))?;
        root.present().map_err(|e| failed(&svg, e.to_string()))?;
    }
    let png = stem.with_extension("png");
    let mut pixels = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        chart.draw(&root).map_err(|e| failed(&png, e))?;
        root.present().map_err(|e| failed(&png, e.to_string()))?;
    }
    write_png(
        &png,
        image::RgbImage::from_raw(size.0, size.1, pixels).expect("a full frame"),
    )?;
    Ok([svg, png])
}

fn write_png(path: &Path, image: image::RgbImage) -> Result<(), crate::Error> {
    let mut encoded = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut encoded),
            image::ImageFormat::Png,
        )
        .map_err(|e| failed(path, e.to_string()))?;
    crate::files::write_atomic(path, &encoded)
}

/// A matrix of values in [0, 1] drawn as shaded cells, with row and column labels and a
/// note in each cell (a confusion matrix: rows are true classes, columns predictions).
pub struct Heatmap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub labels: Vec<String>,
    /// `shade[row][column]` in [0, 1].
    pub shade: Vec<Vec<f64>>,
    /// Written in each cell (when the matrix is small enough to read).
    pub notes: Vec<Vec<String>>,
}

impl Heatmap {
    /// A size that fits the cells and the labels.
    pub fn size(&self) -> (u32, u32) {
        let n = self.labels.len() as u32;
        let cell = if n <= 12 { 56 } else { (900 / n.max(1)).max(8) };
        let margin = 50 + self.label_space();
        // Wide enough for the title however few the classes.
        ((margin + cell * n + 40).max(720), margin + cell * n + 30)
    }

    /// Pixels beside and below the cells for the longest class name (up to 24 characters).
    fn label_space(&self) -> u32 {
        let longest = self.labels.iter().map(|l| l.chars().count()).max();
        40 + 8 * longest.unwrap_or(1).min(24) as u32
    }
}

impl Chart for Heatmap {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        area.fill(&WHITE).map_err(|e| e.to_string())?;
        let n = self.labels.len().max(1) as u32;
        let label_space = self.label_space();
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(label_space)
            .y_label_area_size(label_space)
            .build_cartesian_2d(0u32..n, n..0u32)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_mesh()
            // Not 0: plotters 0.3 never finishes choosing zero key points.
            .x_labels(1)
            .y_labels(1)
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&|_| String::new())
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style((FAMILY, 15))
            .draw()
            .map_err(|e| e.to_string())?;
        // Class names at the cells' centres (the mesh would put them at the cells' edges).
        let (x_range, y_range) = chart.plotting_area().get_pixel_range();
        let half = (
            (x_range.end - x_range.start) / n as i32 / 2,
            (y_range.end - y_range.start) / n as i32 / 2,
        );
        if n <= 40 {
            for (index, label) in self.labels.iter().enumerate() {
                let label: String = label.chars().take(24).collect();
                let (x, _) = chart.backend_coord(&(index as u32, 0));
                let (_, y) = chart.backend_coord(&(0, index as u32));
                let below = TextStyle::from((FAMILY, 13).into_font())
                    .transform(FontTransform::Rotate90)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                area.draw(&Text::new(
                    label.clone(),
                    (x + half.0, y_range.end + 6),
                    below,
                ))
                .map_err(|e| e.to_string())?;
                let left = TextStyle::from((FAMILY, 13).into_font())
                    .pos(Pos::new(HPos::Right, VPos::Center));
                area.draw(&Text::new(label, (x_range.start - 6, y + half.1), left))
                    .map_err(|e| e.to_string())?;
            }
        }
        let cells = self.shade.iter().enumerate().flat_map(|(row, values)| {
            values.iter().enumerate().map(move |(column, &v)| {
                let v = v.clamp(0.0, 1.0);
                // White to a deep blue.
                let mix = |from: f64, to: f64| (from + (to - from) * v) as u8;
                let color = RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0));
                Rectangle::new(
                    [
                        (column as u32, row as u32),
                        (column as u32 + 1, row as u32 + 1),
                    ],
                    color.filled(),
                )
            })
        });
        chart.draw_series(cells).map_err(|e| e.to_string())?;
        if n <= 20 {
            let font_size = if n <= 12 { 14 } else { 10 };
            // Notes are anchored at a cell's top-left corner and moved to its centre.
            for (row, notes) in self.notes.iter().enumerate() {
                for (column, note) in notes.iter().enumerate() {
                    let color = if self.shade[row][column] > 0.5 {
                        WHITE
                    } else {
                        BLACK
                    };
                    let style = TextStyle::from((FAMILY, font_size).into_font())
                        .color(&color)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    let element = EmptyElement::at((column as u32, row as u32))
                        + Text::new(note.clone(), half, style);
                    chart
                        .plotting_area()
                        .draw(&element)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }
}
/// A reliability diagram: each confidence bin's accuracy as a bar over the bin, against
/// the diagonal of perfect calibration.
pub struct Reliability {
    pub title: String,
    /// (lower, upper, accuracy) per bin; empty bins have no accuracy.
    pub bins: Vec<(f64, f64, Option<f64>)>,
}

impl Chart for Reliability {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        area.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("confidence (probability of the predicted class)")
            .y_desc("accuracy")
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(self.bins.iter().filter_map(|&(lower, upper, accuracy)| {
                Some(Rectangle::new(
                    [(lower, 0.0), (upper, accuracy?)],
                    COLORS[0].mix(0.7).filled(),
                ))
            }))
            .map_err(|e| e.to_string())?
            .label("accuracy in the bin")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], COLORS[0].filled()));
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                ShapeStyle::from(&COLORS[3]).stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("perfect calibration")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], COLORS[3].stroke_width(2))
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(|e| e.to_string())
    }
}

/// One image of a grid with two lines of caption under it.
pub struct Tile {
    pub image: image::RgbImage,
    pub caption: [String; 2],
}

/// Writes `tiles` as one PNG, `columns` to a row, each image scaled up to about 112 pixels
/// (nearest neighbour, so pixels stay visible) above its caption.
pub fn write_image_grid(path: &Path, tiles: &[Tile], columns: usize) -> Result<(), crate::Error> {
    register_font();
    const BOX: (u32, u32) = (200, 160);
    const IMAGE: u32 = 112;
    let columns = columns.clamp(1, tiles.len().max(1)) as u32;
    let rows = (tiles.len() as u32).div_ceil(columns).max(1);
    let size = (BOX.0 * columns, BOX.1 * rows);
    let mut canvas = image::RgbImage::from_pixel(size.0, size.1, image::Rgb([255, 255, 255]));
    for (index, tile) in tiles.iter().enumerate() {
        let (column, row) = (index as u32 % columns, index as u32 / columns);
        let (width, height) = tile.image.dimensions();
        let scale = (IMAGE / width.max(height).max(1)).max(1);
        let scaled = image::imageops::resize(
            &tile.image,
            width * scale,
            height * scale,
            image::imageops::FilterType::Nearest,
        );
        let x = column * BOX.0 + (BOX.0 - scaled.width().min(BOX.0)) / 2;
        let y = row * BOX.1 + 6;
        image::imageops::overlay(&mut canvas, &scaled, i64::from(x), i64::from(y));
    }
    let mut pixels = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        for (index, tile) in tiles.iter().enumerate() {
            let (column, row) = (index as u32 % columns, index as u32 / columns);
            let centre = (column * BOX.0 + BOX.0 / 2) as i32;
            let top = (row * BOX.1 + IMAGE + 12) as i32;
            for (line, text) in tile.caption.iter().enumerate() {
                let style = TextStyle::from((FAMILY, 14).into_font())
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top));
                let text: String = text.chars().take(26).collect();
                root.draw(&Text::new(text, (centre, top + 17 * line as i32), style))
                    .map_err(|e| failed(path, e.to_string()))?;
            }
        }
        root.present().map_err(|e| failed(path, e.to_string()))?;
    }
    write_png(
        path,
        image::RgbImage::from_raw(size.0, size.1, pixels).expect("a full frame"),
    )
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
