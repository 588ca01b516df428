//! SVG charts of a report: every ratio at a glance, and latency distributions as CDFs.

use super::report::{Better, Report};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Writes the charts there is data for and returns their file names.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    if ratios(report, &dir.join("ratios.svg"))? {
        written.push("ratios.svg".to_owned());
    }
    let cdfs = [
        (
            "load",
            "latency-load.svg",
            "End-to-end load: upload latency and time to ready",
        ),
        (
            "photos",
            "latency-photos.svg",
            "Photos end to end: time to ready",
        ),
        (
            "links",
            "latency-links.svg",
            "Link issuance latency against /healthz",
        ),
    ];
    for (id, file, title) in cdfs {
        let Some(w) = report.workloads.iter().find(|w| w.id == id) else {
            continue;
        };
        let series: Vec<(&str, &Vec<f64>)> = w
            .samples_ms
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        if !series.is_empty() {
            cdf(title, &series, &dir.join(file))?;
            written.push(file.to_owned());
        }
    }
    Ok(written)
}

fn chart_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

/// One bar per comparison with a ratio, green where satchel is better, with a line at 1.
fn ratios(report: &Report, path: &Path) -> anyhow::Result<bool> {
    let bars: Vec<(String, f64, bool)> = report
        .workloads
        .iter()
        .flat_map(|w| {
            w.comparisons.iter().filter_map(move |c| {
                let r = c.ratio?;
                let good = match c.better {
                    Better::Lower => r < 1.0,
                    Better::Higher => r > 1.0,
                };
                Some((
                    format!(
                        "{}: {} vs {} — {}",
                        w.id,
                        short(&c.satchel),
                        short(&c.peer),
                        c.metric
                    ),
                    r,
                    good,
                ))
            })
        })
        .collect();
    if bars.is_empty() {
        return Ok(false);
    }
    let n = bars.len();
    let root = SVGBackend::new(path, (1100, 90 + 28 * n as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let max = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("satchel ÷ peer (green: satchel better)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(560)
        .build_cartesian_2d(0f64..max, (0usize..n).into_segmented())
        .map_err(chart_err)?;
    chart
        .configure_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ratio")
        .draw()
        .map_err(chart_err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, r, good))| {
            let color = if *good {
                RGBColor(60, 150, 90)
            } else {
                RGBColor(210, 120, 50)
            };
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (*r, SegmentValue::Exact(i + 1)),
                ],
                color.filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(chart_err)?;
    chart
        .draw_series(LineSeries::new(
            [(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
            BLACK.stroke_width(1),
        ))
        .map_err(chart_err)?;
    root.present().map_err(chart_err)?;
    Ok(true)
}

fn short(subject: &str) -> &str {
    subject.split(" (").next().unwrap_or(subject)
}

/// Cumulative distributions on a log time axis: how many requests finished within x ms.
fn cdf(title: &str, series: &[(&str, &Vec<f64>)], path: &Path) -> anyhow::Result<()> {
    let all = series.iter().flat_map(|(_, v)| v.iter().copied());
    let lo = all.clone().fold(f64::INFINITY, f64::min).max(0.01) * 0.8;
    let hi = all.fold(0.0f64, f64::max).max(lo * 2.0) * 1.2;
    let root: DrawingArea<SVGBackend, Shift> =
        SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64)
        .map_err(chart_err)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("milliseconds (log scale)")
        .y_desc("% of requests at or under")
        .draw()
        .map_err(chart_err)?;
    let palette = [
        RGBColor(40, 100, 180),
        RGBColor(210, 100, 40),
        RGBColor(60, 150, 90),
        RGBColor(150, 60, 150),
    ];
    for (i, (name, values)) in series.iter().enumerate() {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(
                sorted
                    .iter()
                    .enumerate()
                    .map(|(j, v)| (*v, 100.0 * (j + 1) as f64 / n)),
                color.stroke_width(2),
            ))
            .map_err(chart_err)?
            .label(format!("{name} (n = {})", sorted.len()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(chart_err)?;
    root.present().map_err(chart_err)?;
    Ok(())
}
