//! PNG figures of a run's report: accuracy by stage, training curves, the mix of reward
//! classes, and the DAG. Text is drawn with the DejaVu Sans font shipped in `assets/fonts`,
//! so the figures need no font installed on the machine: names, titles and legends through
//! [`crate::text`] (glyphs placed with their bearings), axis numbers by plotters.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use scorch_engine::dag::Graph;
use scorch_engine::error::{EngineError, EngineErrorKind};

use crate::text::{FONT, Label, width};
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A colour of the palette.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn fail(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::new(EngineErrorKind::Io, format!("drawing {what}: {e}"))
}

fn font_ready() -> Result<(), EngineError> {
    static READY: OnceLock<bool> = OnceLock::new();
    let ok = *READY.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(fail("text", "the bundled font could not be loaded"))
    }
}

fn canvas(
    path: &Path,
    size: (u32, u32),
) -> Result<DrawingArea<BitMapBackend<'_>, Shift>, EngineError> {
    font_ready()?;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail("the background", e))?;
    Ok(root)
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A part of a figure, in pixels.
type Area<'b> = DrawingArea<BitMapBackend<'b>, Shift>;

/// How a series looks in the legend.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Bar,
    Line,
    Dot,
}

const TITLE_SIZE: f32 = 22.0;
const LEGEND_SIZE: f32 = 14.0;

/// The title across the top, and the area left for the chart and its legend (on the right,
/// beside the plot rather than over it). Returns the chart's area and the legend's.
fn frame<'b>(
    root: &DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    names: &[String],
) -> Result<(Area<'b>, Area<'b>), EngineError> {
    let (w, _) = root.dim_in_pixel();
    root.draw(&Label::new(title, (w as i32 / 2, 10), TITLE_SIZE).centered())
        .map_err(|e| fail(title, e))?;
    let body = root.margin(44, 0, 0, 0);
    let legend_w = names
        .iter()
        .map(|n| width(n, LEGEND_SIZE))
        .fold(0.0f32, f32::max);
    let legend_w = if names.is_empty() {
        0
    } else {
        legend_w.ceil() as u32 + 56
    };
    let (bw, _) = body.dim_in_pixel();
    let (chart, legend) = body.split_horizontally(bw.saturating_sub(legend_w));
    Ok((chart, legend))
}

/// Each series' mark and name, top to bottom, in a box at the top of `area`.
fn legend(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    top: i32,
    entries: &[(String, RGBColor)],
    mark: Mark,
    title: &str,
) -> Result<(), EngineError> {
    if entries.is_empty() {
        return Ok(());
    }
    let (w, _) = area.dim_in_pixel();
    let row = 22i32;
    let (x0, x1) = (4i32, w as i32 - 12);
    let y0 = top;
    let y1 = top + 8 + row * entries.len() as i32;
    let err = |e| fail(title, e);
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], WHITE.filled()))
        .map_err(err)?;
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
        .map_err(err)?;
    for (i, (name, c)) in entries.iter().enumerate() {
        let y = y0 + 6 + i as i32 * row;
        let mid = y + row / 2 - 2;
        match mark {
            Mark::Bar => area.draw(&Rectangle::new(
                [(x0 + 10, mid - 6), (x0 + 24, mid + 6)],
                c.filled(),
            )),
            Mark::Line => area.draw(&PathElement::new(
                vec![(x0 + 8, mid), (x0 + 28, mid)],
                c.stroke_width(2),
            )),
            Mark::Dot => area.draw(&Circle::new((x0 + 17, mid), 5, c.filled())),
        }
        .map_err(err)?;
        area.draw(&Label::new(name.clone(), (x0 + 36, y + 2), LEGEND_SIZE))
            .map_err(err)?;
    }
    Ok(())
}

/// The legend beside the chart, one entry per series in the palette's order, then the file.
fn finish(
    root: &Area<'_>,
    chart: &Chart<'_, '_>,
    legend_area: &Area<'_>,
    names: &[String],
    mark: Mark,
    title: &str,
) -> Result<(), EngineError> {
    let entries: Vec<(String, RGBColor)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), color(i)))
        .collect();
    legend(
        legend_area,
        plot_top(chart, legend_area),
        &entries,
        mark,
        title,
    )?;
    root.present().map_err(|e| fail(title, e))
}

/// The top of the plotting area within the legend's area (both start at the same row).
fn plot_top(chart: &Chart<'_, '_>, legend: &DrawingArea<BitMapBackend<'_>, Shift>) -> i32 {
    let (_, ys): (Range<i32>, Range<i32>) = chart.plotting_area().get_pixel_range();
    let (_, ly) = legend.get_pixel_range();
    ys.start - ly.start
}

/// Each bar's interval `(lo, hi)`, by series then group (`None`: no interval).
pub type Intervals = Vec<Vec<Option<(f64, f64)>>>;

/// Grouped bars: one group per `groups` entry, one bar per series, heights in 0..=`y_max`;
/// each group's name centred under its bars, each value over its bar. `intervals[s][g]`,
/// where given, is bar `g` of series `s`'s interval `(lo, hi)`, drawn as an error bar.
pub fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
    intervals: &[Vec<Option<(f64, f64)>>],
    y_max: f64,
) -> Result<(), EngineError> {
    let root = canvas(path, (960, 540))?;
    let names: Vec<String> = series.iter().map(|s| s.0.clone()).collect();
    let (area, legend_area) = frame(&root, title, &names)?;
    let n = groups.len().max(1) as f64;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    let mut chart = ChartBuilder::on(&area)
        .margin(16)
        .x_label_area_size(8)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5..n - 0.5, -0.12 * y_max..1.08 * y_max)
        .map_err(|e| fail(title, e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| fail(title, e))?;
    // The bars of a group share 80% of its width, each a slot with a small gap.
    let slot = 0.8 / series.len().max(1) as f64;
    let center = |g: usize, s: usize| g as f64 - 0.4 + (s as f64 + 0.5) * slot;
    for (s, (_, values)) in series.iter().enumerate() {
        let c = color(s);
        chart
            .draw_series(values.iter().enumerate().map(|(g, &v)| {
                let x = center(g, s);
                Rectangle::new(
                    [(x - slot * 0.46, 0.0), (x + slot * 0.46, v.max(0.0))],
                    c.filled(),
                )
            }))
            .map_err(|e| fail(title, e))?;
        let label_size = if series.len() * groups.len() > 12 {
            10.0
        } else {
            12.0
        };
        // Each bar's interval, an error bar with caps; its label then sits above the bar's
        // top end.
        let interval = |g: usize| intervals.get(s).and_then(|i| i.get(g).copied().flatten());
        let cap = slot * 0.18;
        chart
            .draw_series(values.iter().enumerate().filter_map(|(g, _)| {
                let (lo, hi) = interval(g)?;
                let x = center(g, s);
                Some(PathElement::new(
                    vec![
                        (x - cap, lo),
                        (x + cap, lo),
                        (x, lo),
                        (x, hi),
                        (x - cap, hi),
                        (x + cap, hi),
                    ],
                    BLACK.stroke_width(2),
                ))
            }))
            .map_err(|e| fail(title, e))?;
        chart
            .draw_series(values.iter().enumerate().map(|(g, &v)| {
                let label = if y_max <= 1.0 {
                    format!("{:.1}%", 100.0 * v)
                } else {
                    format!("{v:.0}")
                };
                let top = interval(g).map_or(v, |(_, hi)| hi.max(v));
                Label::new(
                    label,
                    (center(g, s), top.max(0.0) + 0.055 * y_max),
                    label_size,
                )
                .centered()
            }))
            .map_err(|e| fail(title, e))?;
    }
    chart
        .draw_series(
            groups.iter().enumerate().map(|(g, name)| {
                Label::new(name.clone(), (g as f64, -0.035 * y_max), 14.0).centered()
            }),
        )
        .map_err(|e| fail(title, e))?;
    finish(&root, &chart, &legend_area, &names, Mark::Bar, title)
}

/// Line curves `(name, points)` on one chart. When every x is a whole number (steps), the
/// x axis is labelled with whole numbers only.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[(String, Vec<(f64, f64)>)],
) -> Result<(), EngineError> {
    let root = canvas(path, (960, 540))?;
    let names: Vec<String> = curves.iter().map(|c| c.0.clone()).collect();
    let (area, legend_area) = frame(&root, title, &names)?;
    let points = curves.iter().flat_map(|c| c.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let mut whole = true;
    for &(x, y) in points.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        whole &= x.fract() == 0.0;
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let x1 = x1.max(x0 + 1.0);
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(&area)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, (y0 - pad).min(0.0)..y1 + pad)
        .map_err(|e| fail(title, e))?;
    let whole_label = |x: &f64| {
        if (x - x.round()).abs() < 1e-9 {
            format!("{}", x.round() as i64)
        } else {
            String::new()
        }
    };
    let plain_label = |x: &f64| format!("{x}");
    let span = (x1 - x0).round() as usize;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 15));
    if whole {
        // At most one label per step, and none between steps.
        mesh.x_labels((span + 1).min(11))
            .x_label_formatter(&whole_label);
    } else {
        mesh.x_label_formatter(&plain_label);
    }
    mesh.draw().map_err(|e| fail(title, e))?;
    for (i, (_, pts)) in curves.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(|e| fail(title, e))?;
    }
    finish(&root, &chart, &legend_area, &names, Mark::Line, title)
}

/// One point per run and the arm's mean with error bars: `(arm, points, mean, (lo, hi))`.
pub type ArmPoints = (String, Vec<(f64, f64)>, (f64, f64), (f64, f64));

/// Scatter of points per arm with each arm's mean and vertical interval.
pub fn scatter(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    arms: &[ArmPoints],
) -> Result<(), EngineError> {
    let root = canvas(path, (960, 600))?;
    let names: Vec<String> = arms.iter().map(|a| a.0.clone()).collect();
    let (area, legend_area) = frame(&root, title, &names)?;
    let xs = arms
        .iter()
        .flat_map(|a| a.1.iter().map(|p| p.0).chain([a.2.0]));
    let x1 = xs.fold(1.0f64, f64::max) * 1.1;
    // Zoom to the data: small success rates would sit flat on the axis of a 0..1 scale.
    let ys = arms
        .iter()
        .flat_map(|a| a.1.iter().map(|p| p.1).chain([a.3.1]));
    let y1 = (ys.fold(0.0f64, f64::max) * 1.15).clamp(0.02, 1.05);
    let mut chart = ChartBuilder::on(&area)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.02 * x1..x1, 0.0..y1)
        .map_err(|e| fail(title, e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| fail(title, e))?;
    for (i, (_, pts, mean, (lo, hi))) in arms.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.mix(0.6).filled())))
            .map_err(|e| fail(title, e))?;
        chart
            .draw_series([
                PathElement::new(vec![(mean.0, *lo), (mean.0, *hi)], c.stroke_width(2)),
                PathElement::new(
                    vec![(mean.0 - 0.01 * x1, *lo), (mean.0 + 0.01 * x1, *lo)],
                    c.stroke_width(2),
                ),
                PathElement::new(
                    vec![(mean.0 - 0.01 * x1, *hi), (mean.0 + 0.01 * x1, *hi)],
                    c.stroke_width(2),
                ),
            ])
            .map_err(|e| fail(title, e))?;
        chart
            .draw_series([Cross::new(*mean, 8, c.stroke_width(3))])
            .map_err(|e| fail(title, e))?;
    }
    finish(&root, &chart, &legend_area, &names, Mark::Dot, title)
}

/// A DAG drawn in layers (each node one row below its deepest input): boxes named
/// `id` over `kind`, and arrows from producer to consumer. An arrow between neighbouring
/// layers is straight; one that skips layers runs down a free lane beside the boxes of the
/// layers between, so that no arrow crosses a box.
pub fn dag(path: &Path, title: &str, graph: &Graph) -> Result<(), EngineError> {
    let layout = DagLayout::new(graph);
    let root = canvas(path, (layout.width as u32, layout.height as u32))?;
    let err = |e| fail("the DAG", e);
    root.draw(&Label::new(title, (GAP_X, 10), TITLE_SIZE))
        .map_err(err)?;
    let grey = RGBColor(110, 110, 110);
    for route in &layout.routes {
        root.draw(&PathElement::new(route.clone(), grey.stroke_width(1)))
            .map_err(err)?;
        if let Some(&b) = route.last() {
            root.draw(&Polygon::new(
                vec![b, (b.0 - 5, b.1 - 9), (b.0 + 5, b.1 - 9)],
                grey.filled(),
            ))
            .map_err(err)?;
        }
    }
    for (i, (id, kind)) in graph.nodes.iter().enumerate() {
        let (x, y) = layout.at[i];
        let c = color(kind_color(kind));
        root.draw(&Rectangle::new(
            [(x, y), (x + BOX_W, y + BOX_H)],
            c.mix(0.18).filled(),
        ))
        .map_err(err)?;
        root.draw(&Rectangle::new(
            [(x, y), (x + BOX_W, y + BOX_H)],
            c.stroke_width(2),
        ))
        .map_err(err)?;
        let label: String = id.chars().take(30).collect();
        root.draw(&Label::new(label, (x + 6, y + 5), 14.0))
            .map_err(err)?;
        root.draw(&Label::new(kind.clone(), (x + 6, y + 24), 12.0).color(RGBColor(80, 80, 80)))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

const BOX_W: i32 = 220;
const BOX_H: i32 = 44;
const GAP_X: i32 = 24;
const GAP_Y: i32 = 46;
/// Room on each side for lanes that pass a layer's boxes.
const SIDE: i32 = 48;
/// Distance between lanes that run side by side.
const LANE_STEP: i32 = 7;

/// Where the DAG's boxes and arrows go, in pixels.
struct DagLayout {
    /// Each node's box, top-left.
    at: Vec<(i32, i32)>,
    /// Each edge as a polyline from the producer's bottom to the consumer's top.
    routes: Vec<Vec<(i32, i32)>>,
    width: i32,
    height: i32,
}

impl DagLayout {
    fn new(graph: &Graph) -> Self {
        let n = graph.nodes.len();
        let edges: Vec<(usize, usize)> = graph
            .edges()
            .map(|(from, to, _)| (from, to))
            .filter(|&(f, t)| f < n && t < n)
            .collect();
        let depth = layers(n, &edges);
        let count = depth.iter().max().map_or(1, |d| d + 1);
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (i, d) in depth.iter().enumerate() {
            rows[*d].push(i);
        }
        let widest = rows.iter().map(Vec::len).max().unwrap_or(1).max(1) as i32;
        let width = (widest * (BOX_W + GAP_X) + GAP_X + 2 * SIDE).max(480);
        let height = count as i32 * (BOX_H + GAP_Y) + GAP_Y + 40;
        let top = |d: usize| 40 + GAP_Y / 2 + d as i32 * (BOX_H + GAP_Y);
        let mut at = vec![(0i32, 0i32); n];
        for (d, row) in rows.iter().enumerate() {
            let used = row.len() as i32 * (BOX_W + GAP_X) - GAP_X;
            let left = (width - used) / 2;
            for (k, &i) in row.iter().enumerate() {
                at[i] = (left + k as i32 * (BOX_W + GAP_X), top(d));
            }
        }
        // Lanes already taken, by x, with the layers they span.
        let mut taken: Vec<(i32, usize, usize)> = Vec::new();
        let mut routes = Vec::with_capacity(edges.len());
        for &(from, to) in &edges {
            let a = (at[from].0 + BOX_W / 2, at[from].1 + BOX_H);
            let b = (at[to].0 + BOX_W / 2, at[to].1);
            let (df, dt) = (depth[from], depth[to]);
            if dt <= df + 1 {
                routes.push(vec![a, b]);
                continue;
            }
            // The boxes of the layers in between, as x intervals.
            let blocked: Vec<(i32, i32)> = rows[df + 1..dt]
                .iter()
                .flatten()
                .map(|&i| (at[i].0 - 6, at[i].0 + BOX_W + 6))
                .collect();
            let free = |x: i32| blocked.iter().all(|&(l, r)| x < l || x > r);
            // Candidates: through the gaps between boxes and beside the outermost ones.
            let mut candidates: Vec<i32> = blocked
                .iter()
                .flat_map(|&(l, r)| [l - GAP_X / 2 + 6, r + GAP_X / 2 - 6])
                .collect();
            candidates.push(SIDE / 2);
            candidates.push(width - SIDE / 2);
            let want = (a.0 + b.0) / 2;
            let mut best: Option<i32> = None;
            for c in candidates.into_iter().filter(|&c| free(c)) {
                // Step aside from lanes that overlap in layers.
                let mut x = c;
                let dir = if c < want { -1 } else { 1 };
                while taken
                    .iter()
                    .any(|&(t, f, e)| (t - x).abs() < LANE_STEP && f < dt && df < e)
                    && free(x + dir * LANE_STEP)
                {
                    x += dir * LANE_STEP;
                }
                if best.is_none_or(|bx| (x - want).abs() < (bx - want).abs()) {
                    best = Some(x);
                }
            }
            let lane = best.unwrap_or(SIDE / 2);
            taken.push((lane, df, dt));
            let below = at[from].1 + BOX_H + GAP_Y / 2;
            let above = at[to].1 - GAP_Y / 2;
            routes.push(vec![
                a,
                (a.0, below),
                (lane, below),
                (lane, above),
                (b.0, above),
                b,
            ]);
        }
        Self {
            at,
            routes,
            width,
            height,
        }
    }
}

/// Each node's layer: one below its deepest input.
fn layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut depth = vec![0usize; n];
    // Nodes come in topological order (the workflow's order is checked acyclic); relax
    // until stable in case they do not.
    for _ in 0..n {
        let mut changed = false;
        for &(from, to) in edges {
            if depth[to] < depth[from] + 1 {
                depth[to] = depth[from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

fn kind_color(kind: &str) -> usize {
    match kind {
        "tasks" => 7,
        "rollout" => 0,
        "correct" => 1,
        "filter" => 5,
        "sft" => 2,
        "rl" => 3,
        "eval" => 4,
        _ => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG's pixels as RGB rows.
    fn rgb(path: &Path) -> (usize, Vec<[u8; 3]>) {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let step = info.color_type.samples();
        let pixels = buf[..info.buffer_size()]
            .chunks(step)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        (info.width as usize, pixels)
    }

    #[test]
    fn an_interval_is_drawn_as_an_error_bar_across_the_bar_top() {
        let dir = tempfile::tempdir().unwrap();
        let draw = |name: &str, intervals: &[Vec<Option<(f64, f64)>>]| {
            let path = dir.path().join(name);
            let series = [("test".to_owned(), vec![0.5])];
            bars(
                &path,
                "t",
                "accuracy",
                &["arm".into()],
                &series,
                intervals,
                1.0,
            )
            .unwrap();
            rgb(&path)
        };
        let (width, plain) = draw("plain.png", &[]);
        let (_, with) = draw("with.png", &[vec![Some((0.3, 0.9))]]);
        // The bar: the columns with many pixels of the series' colour (the legend's mark has
        // few), and its rows in the middle one.
        let c = color(0);
        let bar = [c.0, c.1, c.2];
        let height = plain.len() / width;
        let column = |x: usize| (0..height).filter(|&y| plain[y * width + x] == bar).count();
        let cols: Vec<usize> = (0..width).filter(|&x| column(x) > 50).collect();
        assert!(!cols.is_empty(), "no bar drawn");
        let x = (cols[0] + cols[cols.len() - 1]) / 2;
        let rows: Vec<usize> = (0..height)
            .filter(|&y| plain[y * width + x] == bar)
            .collect();
        let (top, bottom) = (rows[0] as f64, rows[rows.len() - 1] as f64);
        // The bar spans 0 to 0.5: the row of value v.
        let row = |v: f64| (bottom - v / 0.5 * (bottom - top)).round() as usize;
        let dark = |p: [u8; 3]| p.iter().all(|&c| c < 90);
        for v in [0.35, 0.45, 0.6, 0.75, 0.85] {
            assert!(dark(with[row(v) * width + x]), "no error bar at {v}");
            assert!(
                !dark(plain[row(v) * width + x]),
                "something dark at {v} without one"
            );
        }
        // Nothing above the interval's top end but its label.
        assert!(!dark(with[row(0.95) * width + x]));
    }

    fn graph(nodes: &[(&str, &str)], edges: &[(usize, usize)]) -> Graph {
        let mut inputs = vec![Vec::new(); nodes.len()];
        for &(from, to) in edges {
            inputs[to].push((from, "out".to_owned(), format!("in{from}")));
        }
        Graph {
            nodes: nodes
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            inputs,
        }
    }

    /// Whether the segment from `a` to `b` enters the box at `at` (its border excluded).
    fn crosses(a: (i32, i32), b: (i32, i32), at: (i32, i32)) -> bool {
        let (x0, y0, x1, y1) = (at.0 + 1, at.1 + 1, at.0 + BOX_W - 1, at.1 + BOX_H - 1);
        (0..=100).any(|k| {
            let t = f64::from(k) / 100.0;
            let x = f64::from(a.0) + t * f64::from(b.0 - a.0);
            let y = f64::from(a.1) + t * f64::from(b.1 - a.1);
            x > f64::from(x0) && x < f64::from(x1) && y > f64::from(y0) && y < f64::from(y1)
        })
    }

    #[test]
    fn no_arrow_of_the_score_dag_crosses_a_box() {
        let g = graph(
            &[
                ("train_tasks", "tasks"),
                ("demos", "rollout"),
                ("warm_sft", "sft"),
                ("mentored", "correct"),
                ("split", "filter"),
                ("score_sft", "sft"),
                ("score_rl", "rl"),
                ("eval_rl", "eval"),
                ("eval_warm", "eval"),
            ],
            &[
                (0, 1),
                (1, 2),
                (0, 3),
                (2, 3),
                (0, 4),
                (3, 4),
                (4, 5),
                (2, 5),
                (4, 6),
                (5, 6),
                (0, 6),
                (6, 7),
                (0, 7),
                (2, 8),
                (0, 8),
            ],
        );
        let layout = DagLayout::new(&g);
        assert_eq!(layout.routes.len(), 15);
        let mut bent = 0;
        for (e, route) in layout.routes.iter().enumerate() {
            bent += usize::from(route.len() > 2);
            for seg in route.windows(2) {
                for (i, &at) in layout.at.iter().enumerate() {
                    assert!(
                        !crosses(seg[0], seg[1], at),
                        "edge {e} {route:?} crosses node {i} at {at:?}"
                    );
                }
            }
            // Each arrow ends on the top of its consumer, coming down.
            let [.., p, q] = route.as_slice() else {
                panic!("{route:?}")
            };
            assert!(p.1 < q.1, "{route:?}");
        }
        assert!(bent >= 5, "edges that skip layers go around: {bent}");
        for &(x, y) in &layout.at {
            assert!(x >= 0 && x + BOX_W <= layout.width && y + BOX_H <= layout.height);
        }
    }

    #[test]
    fn every_figure_is_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let groups = vec!["warm_start".to_owned(), "score_rl".to_owned()];
        let series = vec![("test_split".to_owned(), vec![0.1, 0.5])];
        bars(
            &dir.path().join("b.png"),
            "a_b",
            "acc",
            &groups,
            &series,
            &[vec![Some((0.05, 0.2)), None]],
            1.0,
        )
        .unwrap();
        let curve = vec![("warm_sft".to_owned(), vec![(0.0, 2.0), (1.0, 1.0)])];
        lines(&dir.path().join("l.png"), "t", "step", "loss", &curve).unwrap();
        for f in ["b.png", "l.png"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{f}");
        }
    }
}
