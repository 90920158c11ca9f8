//! The confusion matrix as a heat map: rows are the true classes, columns the predicted ones,
//! each cell shows its count, and its colour is the share of its row (of the images of that
//! true class, how many got this prediction), from white (0%) to dark blue (100%) on a
//! square-root scale, so that the few-percent confusions off the diagonal still show: 1% is
//! already a tenth of the way to dark blue, 25% half of it. A good model has a dark diagonal;
//! the darkest off-diagonal cells are the classes it mixes up.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::grid::text_width;
use super::{draw_error, register_font, write_png, FONT};
use crate::error::{Error, Result};

const MARGIN: i32 = 16;
const LABEL_SIZE: f64 = 14.0;

/// The colour of a share `f` of a row: white (0) to dark blue (1), on a square-root scale.
fn heat(f: f64) -> RGBColor {
    let f = f.clamp(0.0, 1.0).sqrt();
    let lerp = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(lerp(255.0, 8.0), lerp(255.0, 48.0), lerp(255.0, 107.0))
}

/// Writes `confusion` (`confusion[true][predicted]` counts, square) as a labelled PNG heat map.
/// `class_names` label the rows and columns (indices are used where a name is missing).
pub fn write_confusion_png(confusion: &[Vec<usize>], class_names: &[String], title: &str, out: &Path) -> Result<()> {
    let (buf, w, h) = render_confusion(confusion, class_names, title).map_err(|e| draw_error(out, e))?;
    write_png(out, &buf, w, h)
}

/// Renders the heat map into an RGB buffer; returns (pixels, width, height).
pub fn render_confusion(confusion: &[Vec<usize>], class_names: &[String], title: &str) -> Result<(Vec<u8>, u32, u32)> {
    register_font();
    let k = confusion.len();
    if k == 0 || confusion.iter().any(|r| r.len() != k) {
        return Err(Error::invalid("confusion", format!("the matrix must be square and non-empty, got {k} rows")));
    }
    let names: Vec<String> = (0..k).map(|i| class_names.get(i).cloned().unwrap_or_else(|| i.to_string())).collect();
    let cell: i32 = if k <= 12 { 58 } else { (700 / k as i32).max(16) };
    let count_size = (cell as f64 / 4.2).clamp(7.0, 14.0);
    let label_w = names.iter().map(|n| text_width(n, LABEL_SIZE)).max().unwrap_or(0) as i32 + 10;
    let matrix = cell * k as i32;

    // Horizontal layout: axis title "true", row labels, matrix, colour bar with its labels.
    let y_title_x = MARGIN + 10;
    let matrix_x = MARGIN + 28 + label_w;
    let bar_x = matrix_x + matrix + 24;
    let bar_w = 16;
    let bar_label_w = text_width("100%", 12.0) as i32;
    let bar_caption_x = bar_x + bar_w + 8 + bar_label_w + 16;
    let note = "number: images of the row's true class given the column's prediction; colour: their share of the row";
    let width =
        (bar_caption_x + 12 + MARGIN).max(text_width(title, 20.0) as i32 + 2 * MARGIN).max(text_width(note, 13.0) as i32 + 2 * MARGIN);
    // Vertical layout: title, note, matrix, column labels (rotated), axis title "predicted".
    let matrix_y = MARGIN + 30 + 22 + 12;
    let col_label_y = matrix_y + matrix + 8;
    let x_title_y = col_label_y + label_w + 6;
    let height = x_title_y + 22 + MARGIN;

    let (width, height) = (width as u32, height as u32);
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| Error::invalid("plot", e.to_string());
        let font = |size: f64| TextStyle::from((FONT, size).into_font());
        let anchor = |h, v| Pos::new(h, v);

        root.draw_text(title, &font(20.0).color(&BLACK).pos(anchor(HPos::Left, VPos::Top)), (MARGIN, MARGIN)).map_err(e)?;
        root.draw_text(note, &font(13.0).color(&RGBColor(70, 70, 70)).pos(anchor(HPos::Left, VPos::Top)), (MARGIN, MARGIN + 30))
            .map_err(e)?;

        for (t, row) in confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let f = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                let (x0, y0) = (matrix_x + p as i32 * cell, matrix_y + t as i32 * cell);
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], heat(f).filled())).map_err(e)?;
                let ink = if f.sqrt() > 0.55 { WHITE } else { BLACK };
                let style = font(count_size).color(&ink).pos(anchor(HPos::Center, VPos::Center));
                root.draw_text(&count.to_string(), &style, (x0 + cell / 2, y0 + cell / 2)).map_err(e)?;
            }
        }
        // Grid lines and frame.
        let line = RGBColor(200, 200, 200);
        for i in 0..=k as i32 {
            let c = if i == 0 || i == k as i32 { RGBColor(90, 90, 90) } else { line };
            root.draw(&PathElement::new(vec![(matrix_x + i * cell, matrix_y), (matrix_x + i * cell, matrix_y + matrix)], c)).map_err(e)?;
            root.draw(&PathElement::new(vec![(matrix_x, matrix_y + i * cell), (matrix_x + matrix, matrix_y + i * cell)], c)).map_err(e)?;
        }
        // Row labels (true classes), right-aligned against the matrix.
        for (i, n) in names.iter().enumerate() {
            let style = font(LABEL_SIZE).color(&BLACK).pos(anchor(HPos::Right, VPos::Center));
            root.draw_text(n, &style, (matrix_x - 6, matrix_y + i as i32 * cell + cell / 2)).map_err(e)?;
        }
        // Column labels (predicted classes), rotated to read upwards, ending at the matrix.
        for (i, n) in names.iter().enumerate() {
            let style = font(LABEL_SIZE).color(&BLACK).pos(anchor(HPos::Right, VPos::Center)).transform(FontTransform::Rotate270);
            root.draw_text(n, &style, (matrix_x + i as i32 * cell + cell / 2, col_label_y)).map_err(e)?;
        }
        // Axis titles.
        let axis = font(16.0).color(&RGBColor(20, 40, 110));
        root.draw_text("predicted", &axis.pos(anchor(HPos::Center, VPos::Top)), (matrix_x + matrix / 2, x_title_y)).map_err(e)?;
        let rotated = axis.pos(anchor(HPos::Center, VPos::Center)).transform(FontTransform::Rotate270);
        root.draw_text("true", &rotated, (y_title_x, matrix_y + matrix / 2)).map_err(e)?;

        // Colour bar: 100% at the top, 0% at the bottom, on the same square-root scale.
        for y in 0..matrix {
            let s = 1.0 - y as f64 / (matrix - 1).max(1) as f64;
            root.draw(&Rectangle::new([(bar_x, matrix_y + y), (bar_x + bar_w, matrix_y + y + 1)], heat(s * s).filled())).map_err(e)?;
        }
        root.draw(&Rectangle::new([(bar_x, matrix_y), (bar_x + bar_w, matrix_y + matrix)], RGBColor(90, 90, 90))).map_err(e)?;
        for (f, text) in [(1.0, "100%"), (0.5, "50%"), (0.25, "25%"), (0.1, "10%"), (0.01, "1%"), (0.0, "0%")] {
            let y = matrix_y + ((1.0 - f64::sqrt(f)) * (matrix - 1) as f64) as i32;
            root.draw(&PathElement::new(vec![(bar_x + bar_w, y), (bar_x + bar_w + 4, y)], RGBColor(90, 90, 90))).map_err(e)?;
            let style = font(12.0).color(&BLACK).pos(anchor(HPos::Left, VPos::Center));
            root.draw_text(text, &style, (bar_x + bar_w + 7, y)).map_err(e)?;
        }
        let caption = font(13.0).color(&RGBColor(70, 70, 70)).pos(anchor(HPos::Center, VPos::Center)).transform(FontTransform::Rotate270);
        root.draw_text("share of the true class (square-root scale)", &caption, (bar_caption_x, matrix_y + matrix / 2)).map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok((buf, width, height))
}
