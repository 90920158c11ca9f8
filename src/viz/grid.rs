//! A grid of small images: kernels, feature maps. Each tile is upscaled by an integer factor
//! with nearest-neighbour sampling (every source pixel becomes a `scale` x `scale` block, so a
//! 3x3 kernel shows as 9 sharp squares, never blurred), framed by a thin grey border and
//! labelled underneath. Tiles come in titled sections, under a title and a few note lines.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{draw_error, register_font, write_png, FONT};
use crate::error::{Error, Result};

/// One small image: `height` x `width` pixels of 1 (grey) or 3 (RGB) channels, row-major HWC.
#[derive(Clone, Debug)]
pub struct Tile {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
    pub label: String,
}

impl Tile {
    pub fn new(width: usize, height: usize, channels: usize, pixels: Vec<u8>, label: impl Into<String>) -> Result<Tile> {
        if channels != 1 && channels != 3 {
            return Err(Error::invalid("grid tile", format!("{channels} channels: a tile is grey (1) or RGB (3)")));
        }
        if width == 0 || height == 0 || pixels.len() != width * height * channels {
            return Err(Error::invalid("grid tile", format!("{} bytes for a {width}x{height}x{channels} tile", pixels.len())));
        }
        Ok(Tile { width, height, channels, pixels, label: label.into() })
    }

    /// The RGB colour of pixel (x, y).
    fn rgb(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * self.channels;
        if self.channels == 3 {
            [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
        } else {
            [self.pixels[i]; 3]
        }
    }
}

/// Tiles under a heading, all drawn at the same `scale`; `columns` 0 picks as many as fit.
#[derive(Clone, Debug)]
pub struct GridSection {
    pub heading: String,
    pub tiles: Vec<Tile>,
    pub scale: usize,
    pub columns: usize,
}

/// A whole picture: a title, note lines (what the values mean), then the sections.
#[derive(Clone, Debug)]
pub struct GridImage {
    pub title: String,
    pub notes: Vec<String>,
    pub sections: Vec<GridSection>,
    /// The picture is at most this wide (unless one tile alone is wider).
    pub max_width: u32,
}

/// The integer upscaling factor that shows a `side`-pixel tile about `target` pixels wide
/// (at least 1).
pub fn scale_for(side: usize, target: usize) -> usize {
    (target / side.max(1)).max(1)
}

const MARGIN: u32 = 16;
const GAP: u32 = 8;
const TITLE_SIZE: f64 = 22.0;
const NOTE_SIZE: f64 = 14.0;
const HEADING_SIZE: f64 = 15.0;
const LABEL_SIZE: f64 = 12.0;
const TITLE_H: u32 = 34;
const NOTE_H: u32 = 20;
const HEADING_H: u32 = 26;
const LABEL_H: u32 = 16;
const SECTION_GAP: u32 = 12;

/// Width in pixels of `text` in the embedded font at `size`.
pub(crate) fn text_width(text: &str, size: f64) -> u32 {
    register_font();
    FontDesc::new(FontFamily::Name(FONT), size, FontStyle::Normal).box_size(text).map(|(w, _)| w).unwrap_or(0)
}

struct SectionLayout {
    cell_w: u32,
    cell_h: u32,
    columns: u32,
    rows: u32,
}

fn layout_section(s: &GridSection, max_width: u32) -> SectionLayout {
    let scale = s.scale.max(1) as u32;
    let tile_w = s.tiles.iter().map(|t| t.width as u32 * scale + 2).max().unwrap_or(0);
    let tile_h = s.tiles.iter().map(|t| t.height as u32 * scale + 2).max().unwrap_or(0);
    let label_w = s.tiles.iter().map(|t| text_width(&t.label, LABEL_SIZE) + 4).max().unwrap_or(0);
    let cell_w = tile_w.max(label_w).max(1);
    let has_labels = s.tiles.iter().any(|t| !t.label.is_empty());
    let cell_h = tile_h + if has_labels { LABEL_H } else { 0 };
    let n = s.tiles.len().max(1) as u32;
    let fit = ((max_width.saturating_sub(2 * MARGIN) + GAP) / (cell_w + GAP)).max(1);
    let mut columns = if s.columns > 0 { (s.columns as u32).min(n) } else { fit.min(n) };
    let rows = n.div_ceil(columns);
    if s.columns == 0 {
        // Balance the rows: 20 tiles that fit 16 a row become 2 rows of 10, not 16 + 4.
        columns = n.div_ceil(rows);
    }
    SectionLayout { cell_w, cell_h, columns, rows }
}

type TextItem = (String, f64, (i32, i32), Pos, RGBColor);

/// Renders the grid into an RGB buffer; returns (pixels, width, height).
pub fn render_grid(grid: &GridImage) -> Result<(Vec<u8>, u32, u32)> {
    register_font();
    let layouts: Vec<SectionLayout> = grid.sections.iter().map(|s| layout_section(s, grid.max_width)).collect();
    let mut width = text_width(&grid.title, TITLE_SIZE) + 2 * MARGIN;
    for n in &grid.notes {
        width = width.max(text_width(n, NOTE_SIZE) + 2 * MARGIN);
    }
    for (s, l) in grid.sections.iter().zip(&layouts) {
        width = width.max(text_width(&s.heading, HEADING_SIZE) + 2 * MARGIN);
        width = width.max(2 * MARGIN + l.columns * l.cell_w + l.columns.saturating_sub(1) * GAP);
    }
    let width = width.max(240);
    let mut height = MARGIN + TITLE_H + grid.notes.len() as u32 * NOTE_H + 6;
    for l in &layouts {
        height += HEADING_H + l.rows * l.cell_h + l.rows.saturating_sub(1) * GAP + SECTION_GAP;
    }
    height += MARGIN;
    if (width as u64) * (height as u64) > 64_000_000 {
        return Err(Error::invalid("grid", format!("a {width}x{height} picture is too large")));
    }

    let mut buf = vec![255u8; width as usize * height as usize * 3];
    // (text, font size, position, anchor, colour), drawn once the tiles are in place.
    let mut texts: Vec<TextItem> = Vec::new();
    let top_left = Pos::new(HPos::Left, VPos::Top);
    texts.push((grid.title.clone(), TITLE_SIZE, (MARGIN as i32, MARGIN as i32), top_left, BLACK));
    let mut y = MARGIN + TITLE_H;
    for n in &grid.notes {
        texts.push((n.clone(), NOTE_SIZE, (MARGIN as i32, y as i32), top_left, RGBColor(70, 70, 70)));
        y += NOTE_H;
    }
    y += 6;
    for (s, l) in grid.sections.iter().zip(&layouts) {
        texts.push((s.heading.clone(), HEADING_SIZE, (MARGIN as i32, y as i32 + 4), top_left, RGBColor(20, 40, 110)));
        y += HEADING_H;
        let scale = s.scale.max(1);
        for (i, t) in s.tiles.iter().enumerate() {
            let (col, row) = (i as u32 % l.columns, i as u32 / l.columns);
            let cx = MARGIN + col * (l.cell_w + GAP);
            let cy = y + row * (l.cell_h + GAP);
            let (tw, th) = (t.width as u32 * scale as u32 + 2, t.height as u32 * scale as u32 + 2);
            // Centre the tile in its cell; labels sit under it.
            let tx = cx + (l.cell_w - tw) / 2;
            blit_tile(&mut buf, width, t, scale, tx, cy);
            if !t.label.is_empty() {
                let pos = Pos::new(HPos::Center, VPos::Top);
                texts.push((t.label.clone(), LABEL_SIZE, ((cx + l.cell_w / 2) as i32, (cy + th + 3) as i32), pos, RGBColor(40, 40, 40)));
            }
        }
        y += l.rows * l.cell_h + l.rows.saturating_sub(1) * GAP + SECTION_GAP;
    }

    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        for (text, size, pos, anchor, color) in &texts {
            let style = TextStyle::from((FONT, *size).into_font()).color(color).pos(*anchor);
            root.draw_text(text, &style, *pos).map_err(|e| draw_error(Path::new("grid"), e))?;
        }
        root.present().map_err(|e| draw_error(Path::new("grid"), e))?;
    }
    Ok((buf, width, height))
}

/// Copies `t`, upscaled by `scale` and framed by a 1-pixel grey border, with its border's
/// top-left corner at (x0, y0).
fn blit_tile(buf: &mut [u8], width: u32, t: &Tile, scale: usize, x0: u32, y0: u32) {
    let (w, h) = (t.width * scale + 2, t.height * scale + 2);
    let stride = width as usize * 3;
    for dy in 0..h {
        for dx in 0..w {
            let border = dx == 0 || dy == 0 || dx == w - 1 || dy == h - 1;
            let rgb = if border { [150, 150, 150] } else { t.rgb((dx - 1) / scale, (dy - 1) / scale) };
            let i = (y0 as usize + dy) * stride + (x0 as usize + dx) * 3;
            buf[i..i + 3].copy_from_slice(&rgb);
        }
    }
}

/// Renders the grid and writes it as a PNG.
pub fn write_grid_png(grid: &GridImage, out: &Path) -> Result<()> {
    let (buf, w, h) = render_grid(grid)?;
    write_png(out, &buf, w, h)
}
