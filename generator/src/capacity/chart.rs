//! The latency-vs-rate chart of a capacity search: response time p50/p99/p99.9 (ms, log
//! scale) and error ratio (%, right axis) against the offered rate, the SLO latency limits as
//! horizontal lines and the capacity (the knee: highest rate that met every SLO) as a
//! vertical line. Passing steps are filled dots, failing ones hollow.
//!
//! Drawn with plotters, as SVG or PNG. Text needs font metrics even in SVG; plotters' default
//! font path goes through fontconfig (a system library), so instead its `ab_glyph` feature
//! renders with a TTF embedded in the binary: DejaVu Sans (Bitstream Vera licence, see
//! `generator/assets/fonts/DejaVuSans.LICENSE`). Charts then look the same on every machine
//! and need no system package.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use thiserror::Error;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (960, 600);

/// Chart file format, from the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// `.svg` or `.png` (any case); the error names the path.
    pub fn of(path: &Path) -> Result<Format, String> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(format!(
                "invalid --chart {} (the file name must end in .svg or .png)",
                path.display()
            )),
        }
    }
}

#[derive(Debug, Error)]
pub enum ChartError {
    #[error("{0}")]
    Format(String),
    #[error("cannot draw the chart {path}: {msg}")]
    Draw { path: PathBuf, msg: String },
}

/// One step as drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    /// 0..=1.
    pub error_ratio: f64,
    pub pass: bool,
}

/// Everything the chart shows.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartData {
    pub title: String,
    /// Sorted by rate.
    pub points: Vec<Point>,
    /// The capacity (highest passing rate).
    pub knee: Option<f64>,
    /// Latency SLOs: (source, limit in ms).
    pub slo_ms: Vec<(String, f64)>,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a constant of the build; a failure would show as missing text only.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Writes the chart to `path` (SVG or PNG by extension).
pub fn write(d: &ChartData, path: &Path) -> Result<(), ChartError> {
    register_font();
    let err = |msg: String| ChartError::Draw {
        path: path.to_path_buf(),
        msg,
    };
    match Format::of(path).map_err(ChartError::Format)? {
        Format::Svg => draw(SVGBackend::new(path, SIZE).into_drawing_area(), d).map_err(err),
        Format::Png => draw(BitMapBackend::new(path, SIZE).into_drawing_area(), d).map_err(err),
    }
}

/// The chart as an SVG document (for the web UI).
pub fn svg(d: &ChartData) -> String {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        if let Err(e) = draw(root, d) {
            return format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"20\">{}</text></svg>",
                e.replace('<', "&lt;")
            );
        }
    }
    out
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, d: &ChartData) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let x_hi = d.points.iter().map(|p| p.rate).fold(1.0f64, f64::max) * 1.08;
    let lat: Vec<f64> = d
        .points
        .iter()
        .flat_map(|p| [p.p50_ms, p.p99_ms, p.p999_ms])
        .flatten()
        .chain(d.slo_ms.iter().map(|s| s.1))
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let y_lo = lat.iter().copied().fold(f64::INFINITY, f64::min);
    let y_hi = lat.iter().copied().fold(0.0f64, f64::max);
    let (y_lo, y_hi) = if lat.is_empty() {
        (0.1, 1000.0)
    } else {
        ((y_lo * 0.5).max(1e-3), (y_hi * 2.0).max(y_lo * 10.0))
    };
    let err_hi = d
        .points
        .iter()
        .map(|p| p.error_ratio * 100.0)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption(&d.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0f64..x_hi, (y_lo..y_hi).log_scale())
        .map_err(e)?
        .set_secondary_coord(0f64..x_hi, 0f64..err_hi);
    chart
        .configure_mesh()
        .x_desc("offered rate (req/s)")
        .y_desc("response time (ms)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v}"))
        .draw()
        .map_err(e)?;
    chart
        .configure_secondary_axes()
        .y_desc("errors (%)")
        .draw()
        .map_err(e)?;
    type Pick = fn(&Point) -> Option<f64>;
    let series: [(&str, Pick, RGBColor); 3] = [
        ("p50", |p| p.p50_ms, RGBColor(31, 119, 180)),
        ("p99", |p| p.p99_ms, RGBColor(255, 127, 14)),
        ("p99.9", |p| p.p999_ms, RGBColor(214, 39, 40)),
    ];
    for (name, pick, color) in series {
        let pts: Vec<(f64, f64, bool)> = d
            .points
            .iter()
            .filter_map(|p| pick(p).map(|v| (p.rate, v.max(y_lo), p.pass)))
            .collect();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(x, y, _)| (x, y)),
                color.stroke_width(2),
            ))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&(x, y, pass)| {
                let style = if pass {
                    color.filled()
                } else {
                    color.stroke_width(2)
                };
                Circle::new((x, y), 4, style)
            }))
            .map_err(e)?;
    }
    let purple = RGBColor(148, 103, 189);
    chart
        .draw_secondary_series(LineSeries::new(
            d.points.iter().map(|p| (p.rate, p.error_ratio * 100.0)),
            purple.stroke_width(1),
        ))
        .map_err(e)?
        .label("errors (%)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], purple));
    for (src, limit) in &d.slo_ms {
        chart
            .draw_series(LineSeries::new(
                [(0.0, *limit), (x_hi, *limit)],
                BLACK.mix(0.6).stroke_width(1),
            ))
            .map_err(e)?
            .label(format!("SLO {src}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.6)));
    }
    if let Some(knee) = d.knee {
        let green = RGBColor(44, 160, 44);
        chart
            .draw_series(LineSeries::new(
                [(knee, y_lo), (knee, y_hi)],
                green.stroke_width(2),
            ))
            .map_err(e)?
            .label(format!("capacity {knee:.0} req/s"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ChartData {
        let pt = |rate: f64, p99: f64, pass| Point {
            rate,
            p50_ms: Some(p99 / 3.0),
            p99_ms: Some(p99),
            p999_ms: Some(p99 * 1.5),
            error_ratio: if pass { 0.0 } else { 0.02 },
            pass,
        };
        ChartData {
            title: "http://127.0.0.1:8080/ — found".into(),
            points: vec![
                pt(1000.0, 3.0, true),
                pt(1500.0, 4.0, true),
                pt(2000.0, 300.0, false),
            ],
            knee: Some(1500.0),
            slo_ms: vec![("p99<250ms".into(), 250.0)],
        }
    }

    #[test]
    fn svg_has_the_series_and_labels() {
        let s = svg(&data());
        assert!(s.starts_with("<svg"), "{}", &s[..s.len().min(200)]);
        for text in [
            "p99.9",
            "SLO p99&lt;250ms",
            "capacity 1500 req/s",
            "offered rate",
        ] {
            assert!(s.contains(text), "missing {text:?}");
        }
    }

    #[test]
    fn files_by_extension() {
        let dir = std::env::temp_dir().join(format!("gen-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["c.svg", "c.png"] {
            let p = dir.join(name);
            write(&data(), &p).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert!(bytes.len() > 1000, "{name}: {} bytes", bytes.len());
            if name.ends_with("png") {
                assert_eq!(&bytes[..4], b"\x89PNG");
            }
        }
        assert!(Format::of(Path::new("c.gif"))
            .unwrap_err()
            .contains("c.gif"));
        // No steps at all still draws (an empty chart), never panics.
        let empty = ChartData {
            points: Vec::new(),
            knee: None,
            slo_ms: Vec::new(),
            ..data()
        };
        assert!(svg(&empty).starts_with("<svg"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
