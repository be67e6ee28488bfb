//! Text of the figures, laid out with each glyph's own bearings. plotters' ab_glyph text
//! places every glyph's bitmap at the pen position and drops its left bearing, so a glyph
//! whose bearing differs from its neighbours' lands off its place: `warm_sft` was drawn
//! `warm _sft`.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters::element::{Drawable, PointCollection};
use plotters::style::RGBColor;
use plotters_backend::{BackendColor, BackendCoord, DrawingBackend, DrawingErrorKind};

/// DejaVu Sans, shipped with the crate: the figures need no font on the machine.
pub(crate) const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

fn font() -> Option<&'static FontRef<'static>> {
    static FONT_REF: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT_REF
        .get_or_init(|| FontRef::try_from_slice(FONT).ok())
        .as_ref()
}

/// Where a label's position is, horizontally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// At its left end.
    Left,
    /// At its middle.
    Center,
}

/// One line of text at a point (its top), as a plotters element.
#[derive(Debug, Clone)]
pub struct Label<C> {
    text: String,
    at: C,
    size: f32,
    color: RGBColor,
    align: Align,
}

impl<C> Label<C> {
    /// `text` at `at` (the top of the line), `size` pixels tall, black, left-aligned.
    pub fn new(text: impl Into<String>, at: C, size: f32) -> Self {
        Self {
            text: text.into(),
            at,
            size,
            color: RGBColor(0, 0, 0),
            align: Align::Left,
        }
    }
    /// In `color`.
    pub fn color(mut self, color: RGBColor) -> Self {
        self.color = color;
        self
    }
    /// Centred on its point.
    pub fn centered(mut self) -> Self {
        self.align = Align::Center;
        self
    }
}

/// The width in pixels of `text` at `size`.
pub fn width(text: &str, size: f32) -> f32 {
    let Some(font) = font() else {
        return 0.0;
    };
    let scaled = font.as_scaled(PxScale::from(size));
    let mut caret = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    caret
}

impl<'a, C: 'a> PointCollection<'a, C> for &'a Label<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Label<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut points: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let (Some((x, y)), Some(font)) = (points.next(), font()) else {
            return Ok(());
        };
        let scale = PxScale::from(self.size);
        let scaled = font.as_scaled(scale);
        let left = match self.align {
            Align::Left => x as f32,
            Align::Center => x as f32 - width(&self.text, self.size) / 2.0,
        };
        let baseline = y as f32 + scaled.ascent();
        let rgb = (self.color.0, self.color.1, self.color.2);
        let mut caret = left;
        let mut prev = None;
        let mut pixels = Vec::new();
        for c in self.text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(scale, point(caret, baseline));
            caret += scaled.h_advance(id);
            if let Some(outline) = font.outline_glyph(glyph) {
                // The glyph's pixels are relative to its own bounds, bearings included.
                let bounds = outline.px_bounds();
                outline.draw(|gx, gy, coverage| {
                    if coverage > 0.0 {
                        pixels.push((
                            (
                                bounds.min.x as i32 + gx as i32,
                                bounds.min.y as i32 + gy as i32,
                            ),
                            coverage,
                        ));
                    }
                });
            }
        }
        for (at, coverage) in pixels {
            backend.draw_pixel(
                at,
                BackendColor {
                    alpha: f64::from(coverage.min(1.0)),
                    rgb,
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::prelude::*;

    /// The ink columns of a row range of an RGB buffer `w` pixels wide.
    fn ink_columns(buf: &[u8], w: usize, rows: Range) -> Vec<usize> {
        (0..w)
            .filter(|&x| rows.clone().any(|y| buf[(y * w + x) * 3] < 128))
            .collect()
    }
    type Range = std::ops::Range<usize>;

    /// The underscore of `m_s` starts where the `m` ends (one pixel or two of air), as
    /// DejaVu's metrics place it; plotters' own text left a gap of a character's width.
    #[test]
    fn an_underscore_sits_next_to_its_neighbours() {
        let (w, h) = (200usize, 40usize);
        let mut buf = vec![255u8; w * h * 3];
        {
            let root =
                BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
            root.draw(&Label::new("m_s", (10, 5), 24.0)).unwrap();
            root.present().unwrap();
        }
        // The underscore is the only ink below the baseline; `m` the ink above it, left.
        let under: Vec<usize> = (0..h)
            .rev()
            .find(|&y| (0..w).any(|x| buf[(y * w + x) * 3] < 128))
            .map(|y| ink_columns(&buf, w, y..y + 1))
            .unwrap();
        let glyphs = ink_columns(&buf, w, 10..20);
        let m_right = glyphs
            .windows(2)
            .find(|p| p[1] > p[0] + 1)
            .map(|p| p[0])
            .unwrap();
        let gap = under[0] as i64 - m_right as i64;
        assert!(
            (-1..=3).contains(&gap),
            "underscore at {under:?}, m ends at {m_right}"
        );
        let total = width("m_s", 24.0);
        assert!((40.0..60.0).contains(&total), "{total}");
    }

    #[test]
    fn a_centred_label_is_centred_on_its_point() {
        let (w, h) = (200usize, 40usize);
        let mut buf = vec![255u8; w * h * 3];
        {
            let root =
                BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
            root.draw(&Label::new("score_sft", (100, 5), 16.0).centered())
                .unwrap();
            root.present().unwrap();
        }
        let cols = ink_columns(&buf, w, 0..h);
        let mid = (cols[0] + cols[cols.len() - 1]) as f64 / 2.0;
        assert!((mid - 100.0).abs() <= 2.0, "{cols:?}");
    }
}
