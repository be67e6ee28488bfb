//! PNG figures of a run's report: accuracy by stage, training curves, the mix of reward
//! classes, and the DAG. Text is drawn with the DejaVu Sans font shipped in `assets/fonts`,
//! so the figures need no font installed on the machine.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use scorch_engine::dag::Graph;
use scorch_engine::error::{EngineError, EngineErrorKind};

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
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

/// Draw the legend at `position` and write the file.
fn finish<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    root: &DrawingArea<BitMapBackend<'b>, Shift>,
    position: SeriesLabelPosition,
    title: &str,
) -> Result<(), EngineError> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| fail(title, e))?;
    root.present().map_err(|e| fail(title, e))
}

/// Grouped bars: one group per `groups` entry, one bar per series, heights in 0..=`y_max`.
pub fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
    y_max: f64,
) -> Result<(), EngineError> {
    let root = canvas(path, (960, 540))?;
    let n = groups.len().max(1) as f64;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(8)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5..n - 0.5, -0.12 * y_max..1.05 * y_max)
        .map_err(|e| fail(title, e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| fail(title, e))?;
    let width = 0.8 / series.len().max(1) as f64;
    for (s, (name, values)) in series.iter().enumerate() {
        let c = color(s);
        chart
            .draw_series(values.iter().enumerate().map(|(g, &v)| {
                let x0 = g as f64 - 0.4 + s as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v.max(0.0))], c.filled())
            }))
            .map_err(|e| fail(title, e))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        chart
            .draw_series(values.iter().enumerate().map(|(g, &v)| {
                let x = g as f64 - 0.4 + (s as f64 + 0.1) * width;
                let label = if y_max <= 1.0 {
                    format!("{:.1}%", 100.0 * v)
                } else {
                    format!("{v:.0}")
                };
                Text::new(label, (x, v.max(0.0) + 0.04 * y_max), ("sans-serif", 12))
            }))
            .map_err(|e| fail(title, e))?;
    }
    chart
        .draw_series(groups.iter().enumerate().map(|(g, name)| {
            Text::new(
                name.clone(),
                (g as f64 - 0.4, -0.06 * y_max),
                ("sans-serif", 14),
            )
        }))
        .map_err(|e| fail(title, e))?;
    finish(&mut chart, &root, SeriesLabelPosition::MiddleRight, title)
}

/// Line curves `(name, points)` on one chart.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[(String, Vec<(f64, f64)>)],
) -> Result<(), EngineError> {
    let root = canvas(path, (960, 540))?;
    let points = curves.iter().flat_map(|c| c.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad).min(0.0)..y1 + pad)
        .map_err(|e| fail(title, e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| fail(title, e))?;
    for (i, (name, pts)) in curves.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(|e| fail(title, e))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    finish(&mut chart, &root, SeriesLabelPosition::MiddleRight, title)
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
    let xs = arms
        .iter()
        .flat_map(|a| a.1.iter().map(|p| p.0).chain([a.2.0]));
    let x1 = xs.fold(1.0f64, f64::max) * 1.1;
    // Zoom to the data: small success rates would sit flat on the axis of a 0..1 scale.
    let ys = arms
        .iter()
        .flat_map(|a| a.1.iter().map(|p| p.1).chain([a.3.1]));
    let y1 = (ys.fold(0.0f64, f64::max) * 1.15).clamp(0.02, 1.05);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
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
    for (i, (name, pts, mean, (lo, hi))) in arms.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.mix(0.6).filled())))
            .map_err(|e| fail(title, e))?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x + 6, y), 5, c.filled()));
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
    finish(&mut chart, &root, SeriesLabelPosition::LowerRight, title)
}

/// A DAG drawn in layers (each node one row below its deepest input): boxes named
/// `id (kind)` and arrows from producer to consumer.
pub fn dag(path: &Path, title: &str, graph: &Graph) -> Result<(), EngineError> {
    let nodes = &graph.nodes;
    let edges: Vec<(usize, usize)> = graph.edges().map(|(from, to, _)| (from, to)).collect();
    let n = nodes.len();
    let mut depth = vec![0usize; n];
    // Nodes come in topological order (the workflow's order is checked acyclic); relax
    // until stable in case they do not.
    for _ in 0..n {
        let mut changed = false;
        for &(from, to) in &edges {
            if from < n && to < n && depth[to] < depth[from] + 1 {
                depth[to] = depth[from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let layers = depth.iter().max().map_or(1, |d| d + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, d) in depth.iter().enumerate() {
        rows[*d].push(i);
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let (box_w, box_h, gap_x, gap_y) = (220i32, 44i32, 24i32, 46i32);
    let width = (widest as i32 * (box_w + gap_x) + gap_x).max(480) as u32;
    let height = (layers as i32 * (box_h + gap_y) + gap_y + 40) as u32;
    let root = canvas(path, (width, height))?;
    root.draw(&Text::new(
        title.to_owned(),
        (gap_x, 10),
        ("sans-serif", 22),
    ))
    .map_err(|e| fail("the DAG", e))?;
    let mut at = vec![(0i32, 0i32); n];
    for (d, row) in rows.iter().enumerate() {
        let used = row.len() as i32 * (box_w + gap_x) - gap_x;
        let left = (width as i32 - used) / 2;
        for (k, &i) in row.iter().enumerate() {
            at[i] = (
                left + k as i32 * (box_w + gap_x),
                40 + gap_y / 2 + d as i32 * (box_h + gap_y),
            );
        }
    }
    for &(from, to) in &edges {
        if from >= n || to >= n {
            continue;
        }
        let a = (at[from].0 + box_w / 2, at[from].1 + box_h);
        let b = (at[to].0 + box_w / 2, at[to].1);
        let grey = RGBColor(110, 110, 110);
        root.draw(&PathElement::new(vec![a, b], grey.stroke_width(1)))
            .map_err(|e| fail("the DAG", e))?;
        root.draw(&Polygon::new(
            vec![b, (b.0 - 5, b.1 - 9), (b.0 + 5, b.1 - 9)],
            grey.filled(),
        ))
        .map_err(|e| fail("the DAG", e))?;
    }
    for (i, (id, kind)) in nodes.iter().enumerate() {
        let (x, y) = at[i];
        let c = color(kind_color(kind));
        root.draw(&Rectangle::new(
            [(x, y), (x + box_w, y + box_h)],
            c.mix(0.18).filled(),
        ))
        .map_err(|e| fail("the DAG", e))?;
        root.draw(&Rectangle::new(
            [(x, y), (x + box_w, y + box_h)],
            c.stroke_width(2),
        ))
        .map_err(|e| fail("the DAG", e))?;
        let label: String = id.chars().take(30).collect();
        root.draw(&Text::new(label, (x + 6, y + 5), ("sans-serif", 14)))
            .map_err(|e| fail("the DAG", e))?;
        root.draw(&Text::new(
            kind.clone(),
            (x + 6, y + 24),
            ("sans-serif", 12).into_font().color(&RGBColor(80, 80, 80)),
        ))
        .map_err(|e| fail("the DAG", e))?;
    }
    root.present().map_err(|e| fail("the DAG", e))
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
