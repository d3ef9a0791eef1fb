//! The dashboard's charts as SVG (plotters): canary weight over time, and
//! one metric's measurements against its condition's threshold. The x axis
//! is minutes before now.

use jiff::Timestamp;
use plotters::prelude::*;
use rollout_core::types::AnalysisPhase;

use super::history::Point;

const SIZE: (u32, u32) = (560, 180);
const BLUE: RGBColor = RGBColor(37, 99, 235);
const GREEN: RGBColor = RGBColor(22, 163, 74);
const RED: RGBColor = RGBColor(220, 38, 38);
const GREY: RGBColor = RGBColor(120, 120, 120);
const ORANGE: RGBColor = RGBColor(234, 88, 12);

/// A number a condition compares `result` (or `result[0]`) with:
/// `result[0] < 0.05` → 0.05. Other conditions have no line to draw.
pub fn threshold(condition: &str) -> Option<f64> {
    let rest = condition.trim().strip_prefix("result")?;
    let rest = rest.strip_prefix("[0]").unwrap_or(rest).trim_start();
    let rest = ["<=", ">=", "<", ">"]
        .iter()
        .find_map(|op| rest.strip_prefix(op))?;
    rest.trim().parse().ok()
}

/// Minutes from `now` back to `at` (negative).
fn minutes(at: Timestamp, now: Timestamp) -> f64 {
    -(now.duration_since(at).as_secs_f64() / 60.0)
}

/// The x range: from the first point (at least five minutes back) to now.
fn x_range(first: Option<Timestamp>, now: Timestamp) -> std::ops::Range<f64> {
    let start = first.map_or(-5.0, |t| minutes(t, now)).min(-5.0);
    start..0.0
}

/// Canary weight as a step line, a point at each change, held until now.
pub fn weights(points: &[(Timestamp, i32)], now: Timestamp) -> String {
    let mut svg = String::new();
    let drawn =
        (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            let mut chart = ChartBuilder::on(&root)
                .margin(8)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(x_range(points.first().map(|p| p.0), now), 0.0..100.0)?;
            chart
                .configure_mesh()
                .x_desc("minutes ago")
                .y_desc("canary %")
                .max_light_lines(0)
                .x_labels(6)
                .y_labels(6)
                .draw()?;
            let mut line = Vec::new();
            for (i, (at, weight)) in points.iter().enumerate() {
                let x = minutes(*at, now);
                if i > 0 {
                    line.push((x, line.last().map_or(0.0, |p: &(f64, f64)| p.1)));
                }
                line.push((x, f64::from(*weight)));
            }
            if let Some(last) = line.last().copied() {
                line.push((0.0, last.1));
            }
            chart.draw_series(LineSeries::new(line, BLUE.stroke_width(2)))?;
            chart.draw_series(points.iter().map(|(at, w)| {
                Circle::new((minutes(*at, now), f64::from(*w)), 3, BLUE.filled())
            }))?;
            root.present()?;
            Ok(())
        })();
    drawn.map_or_else(|e| failed(&e.to_string()), |()| svg)
}

/// One metric's measurements (coloured by verdict) and, when its condition
/// compares with a number, that threshold as a line.
pub fn measurements(points: &[Point], threshold: Option<f64>, now: Timestamp) -> String {
    let mut svg = String::new();
    let values = points.iter().map(|p| p.value).chain(threshold);
    let (low, high) = values.fold((0.0f64, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let top = if high > low { high * 1.15 } else { 1.0 };
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(x_range(points.first().map(|p| p.at), now), low..top)?;
        chart
            .configure_mesh()
            .x_desc("minutes ago")
            .max_light_lines(0)
            .x_labels(6)
            .y_labels(6)
            .draw()?;
        if let Some(limit) = threshold {
            let range = x_range(points.first().map(|p| p.at), now);
            chart.draw_series(DashedLineSeries::new(
                [(range.start, limit), (0.0, limit)],
                6,
                4,
                ORANGE.stroke_width(2),
            ))?;
        }
        let line = points.iter().map(|p| (minutes(p.at, now), p.value));
        chart.draw_series(LineSeries::new(line, GREY.stroke_width(1)))?;
        chart.draw_series(points.iter().map(|p| {
            let colour = match p.phase {
                AnalysisPhase::Successful => GREEN,
                AnalysisPhase::Failed => RED,
                _ => GREY,
            };
            Circle::new((minutes(p.at, now), p.value), 4, colour.filled())
        }))?;
        root.present()?;
        Ok(())
    })();
    drawn.map_or_else(|e| failed(&e.to_string()), |()| svg)
}

/// What is shown instead of a chart that could not be drawn.
fn failed(why: &str) -> String {
    format!(
        "<p class=\"why\">chart not drawn: {}</p>",
        why.replace('<', "&lt;")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_of_simple_comparisons() {
        assert_eq!(threshold("result[0] < 0.05"), Some(0.05));
        assert_eq!(threshold(" result >= 0.99 "), Some(0.99));
        assert_eq!(threshold("result[0] <= 5"), Some(5.0));
        assert_eq!(threshold("len(result) > 0"), None);
        assert_eq!(threshold("result[0] < 0.05 && result[1] < 2"), None);
    }

    #[test]
    fn charts_have_a_point_per_change_and_measurement() {
        let now = Timestamp::from_second(600).unwrap();
        let t = |s| Timestamp::from_second(s).unwrap();
        let svg = weights(&[(t(0), 0), (t(60), 20), (t(300), 40)], now);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3);
        let points: Vec<Point> = [(120, 0.01), (180, 0.2)]
            .iter()
            .map(|&(at, value)| Point {
                at: t(at),
                value,
                phase: if value < 0.05 {
                    AnalysisPhase::Successful
                } else {
                    AnalysisPhase::Failed
                },
            })
            .collect();
        let svg = measurements(&points, Some(0.05), now);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("#DC2626"), "a failed point is red");
        assert!(svg.contains("#EA580C"), "the threshold line is drawn");
    }
}
