//! Training curves: loss and accuracy per epoch, from the run folder's metrics.csv.
//!
//! Two panels side by side. Left: the loss (mean cross-entropy; the training loss also holds
//! the L2 penalty and is averaged over the epoch while the weights change, the validation and
//! test losses are measured on the weights at the end of the epoch). Right: the accuracy in
//! percent. With one run, training, validation and test have their own colours, test dashed;
//! with several, each run has a colour and the line styles tell the splits apart: training thin,
//! validation thick, test dashed. A validation gap that widens while training accuracy rises is
//! overfitting.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{draw_error, register_font, write_file, write_png, FONT};
use crate::error::{Error, Result};
use crate::train::metrics::{read_metrics, EpochMetrics};

/// Size of the chart in pixels (PNG) or user units (SVG).
pub const CURVES_SIZE: (u32, u32) = (1200, 520);

/// Height of the band at the top that holds the title.
pub const TITLE_BAND: u32 = 44;

const SPLIT_COLOURS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];
const RUN_COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The metrics of a run folder (its metrics.csv) or of a metrics.csv file given directly.
pub fn read_run_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    let csv: PathBuf = if path.is_dir() { path.join("metrics.csv") } else { path.to_path_buf() };
    let rows = read_metrics(&csv)?;
    if rows.is_empty() {
        return Err(Error::data(&csv, "no epochs yet: metrics.csv has only its header"));
    }
    Ok(rows)
}

/// Reads each run's metrics.csv and draws all runs on one chart (see [`write_curves_for`]).
/// `runs` are (run folder or metrics.csv, label) pairs.
pub fn write_curves(runs: &[(PathBuf, String)], out_png: &Path, out_svg: Option<&Path>) -> Result<()> {
    let mut series = Vec::with_capacity(runs.len());
    for (dir, label) in runs {
        series.push((label.clone(), read_run_metrics(dir)?));
    }
    write_curves_for(&series, out_png, out_svg)
}

/// Draws the loss and accuracy curves of `runs` ((label, epochs) pairs) to a PNG and, if
/// given, an SVG.
pub fn write_curves_for(runs: &[(String, Vec<EpochMetrics>)], out_png: &Path, out_svg: Option<&Path>) -> Result<()> {
    register_font();
    if runs.is_empty() || runs.iter().all(|(_, r)| r.is_empty()) {
        return Err(Error::invalid("plot", "no epochs to draw"));
    }
    let (w, h) = CURVES_SIZE;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw_curves(&root, runs).map_err(|e| draw_error(out_png, e))?;
        root.present().map_err(|e| draw_error(out_png, e))?;
    }
    write_png(out_png, &buf, w, h)?;
    if let Some(svg_path) = out_svg {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            draw_curves(&root, runs).map_err(|e| draw_error(svg_path, e))?;
            root.present().map_err(|e| draw_error(svg_path, e))?;
        }
        write_file(svg_path, svg.as_bytes())?;
    }
    Ok(())
}

/// The chart title for these runs.
pub fn curves_title(runs: &[(String, Vec<EpochMetrics>)]) -> String {
    let labels: Vec<&str> = runs.iter().map(|(l, _)| l.as_str()).collect();
    let mut names = labels.join(", ");
    if names.chars().count() > 70 {
        names = format!("{} runs", labels.len());
    }
    format!("Training curves: {names}")
}

#[derive(Clone, Copy)]
enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// One line: its label, points (epoch, value) and look.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    split: Split,
}

fn lines(runs: &[(String, Vec<EpochMetrics>)], loss: bool) -> Vec<Line> {
    let single = runs.len() == 1;
    let mut out = Vec::new();
    for (r, (label, rows)) in runs.iter().enumerate() {
        for (s, split) in [Split::Train, Split::Validation, Split::Test].into_iter().enumerate() {
            let value = |m: &EpochMetrics| -> f32 {
                match (split, loss) {
                    (Split::Train, true) => m.train_loss,
                    (Split::Validation, true) => m.val_loss,
                    (Split::Test, true) => m.test_loss,
                    (Split::Train, false) => 100.0 * m.train_accuracy,
                    (Split::Validation, false) => 100.0 * m.val_accuracy,
                    (Split::Test, false) => 100.0 * m.test_accuracy,
                }
            };
            let points: Vec<(f64, f64)> = rows.iter().map(|m| (m.epoch as f64, value(m) as f64)).filter(|(_, v)| v.is_finite()).collect();
            if points.is_empty() {
                continue; // e.g. no validation split: val_* are NaN
            }
            let (colour, label) = if single {
                (SPLIT_COLOURS[s], split.name().to_string())
            } else {
                (RUN_COLOURS[r % RUN_COLOURS.len()], format!("{label} {}", split.name()))
            };
            out.push(Line { label, points, colour, split });
        }
    }
    out
}

type DrawResult = std::result::Result<(), String>;

fn draw_curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, runs: &[(String, Vec<EpochMetrics>)]) -> DrawResult {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (w, _) = root.dim_in_pixel();
    let title = TextStyle::from((FONT, 24).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(&curves_title(runs), &title, (w as i32 / 2, TITLE_BAND as i32 / 2 + 2)).map_err(err)?;
    let (_, body) = root.split_vertically(TITLE_BAND);
    let panels = body.split_evenly((1, 2));
    let max_epoch = runs.iter().flat_map(|(_, r)| r.iter().map(|m| m.epoch)).max().unwrap_or(1).max(1);
    draw_panel(&panels[0], runs, true, max_epoch)?;
    draw_panel(&panels[1], runs, false, max_epoch)?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[(String, Vec<EpochMetrics>)],
    loss: bool,
    max_epoch: usize,
) -> DrawResult {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let lines = lines(runs, loss);
    let values = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
    let y_range = if loss {
        0.0..(hi * 1.1).max(1e-3)
    } else {
        let lo = ((lo - 2.0) / 5.0).floor() * 5.0;
        let hi = ((hi + 2.0) / 5.0).ceil() * 5.0;
        lo.max(0.0)..hi.min(100.0).max(lo.max(0.0) + 5.0)
    };
    // Epochs on x, padded so that the first and last points are not cut by the frame. Asking
    // for at most as many labels as epochs makes plotters step by whole epochs (1, 2, 5, ...).
    let pad = if max_epoch == 1 { 0.5 } else { (0.03 * (max_epoch - 1) as f64).max(0.08) };
    let x_range = (1.0 - pad)..(max_epoch as f64 + pad);
    let (caption, y_desc) = if loss { ("Loss", "loss (cross-entropy)") } else { ("Accuracy", "accuracy (%)") };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 19))
        .margin(14)
        .margin_right(24)
        .x_label_area_size(48)
        .y_label_area_size(68)
        .build_cartesian_2d(x_range, y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .y_labels(8)
        .x_labels(max_epoch.min(12))
        .x_max_light_lines(1)
        .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-6 { format!("{x:.0}") } else { String::new() })
        .y_label_formatter(&|y| if loss { format!("{y:.2}") } else { format!("{y:.0}") })
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(err)?;
    for line in &lines {
        let colour = line.colour;
        // With several runs the colour is the run's: thin train, thick validation, dashed test.
        let width = match line.split {
            Split::Train if runs.len() > 1 => 1,
            Split::Validation if runs.len() > 1 => 3,
            _ => 2,
        };
        let style = colour.stroke_width(width);
        let anno = match line.split {
            Split::Test => chart.draw_series(DashedLineSeries::new(line.points.clone(), 8, 6, style)).map_err(err)?,
            _ => chart.draw_series(LineSeries::new(line.points.clone(), style)).map_err(err)?,
        };
        let dashed = matches!(line.split, Split::Test);
        anno.label(line.label.clone()).legend(move |(x, y)| {
            if dashed {
                EmptyElement::at((x, y)) + PathElement::new(vec![(0, 0), (8, 0)], style) + PathElement::new(vec![(14, 0), (22, 0)], style)
            } else {
                EmptyElement::at((x, y)) + PathElement::new(vec![(0, 0), (22, 0)], style) + PathElement::new(vec![(0, 0), (0, 0)], style)
            }
        });
        let radius = if max_epoch > 20 { 2 } else { 3 };
        chart.draw_series(line.points.iter().map(|&p| Circle::new(p, radius, colour.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(if loss { SeriesLabelPosition::UpperRight } else { SeriesLabelPosition::LowerRight })
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(160, 160, 160))
        .margin(10)
        .draw()
        .map_err(err)?;
    Ok(())
}
