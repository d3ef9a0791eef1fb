//! What the dashboard has seen of each Rollout over time: its canary weight
//! at every change, and every analysis measurement (the status keeps only
//! the latest ten per metric). Pure: the watch feeds it, the charts read it.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use rollout_core::types::{AnalysisPhase, Rollout};

/// Points kept per series: hours of a canary measured every 30 s.
const KEEP: usize = 1000;

/// One measurement: when it finished, its first number, its verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at: Timestamp,
    pub value: f64,
    pub phase: AnalysisPhase,
}

/// One Rollout's history.
#[derive(Debug, Default, Clone)]
pub struct Series {
    /// (when seen, canary weight), one entry per change.
    pub weights: Vec<(Timestamp, i32)>,
    /// Per analysis run (`step-2`, `background`) and metric, oldest first.
    pub metrics: BTreeMap<(String, String), Vec<Point>>,
}

/// Every Rollout's history, by (namespace, name).
#[derive(Debug, Default)]
pub struct History {
    rollouts: HashMap<(String, String), Series>,
}

impl History {
    /// Records what `rollout` shows at `now` that is new.
    pub fn observe(&mut self, rollout: &Rollout, now: Timestamp) {
        let key = (
            rollout.metadata.namespace.clone().unwrap_or_default(),
            rollout.metadata.name.clone().unwrap_or_default(),
        );
        let series = self.rollouts.entry(key).or_default();
        let Some(status) = &rollout.status else {
            return;
        };
        let weight = status
            .canary
            .weights
            .as_ref()
            .map_or(0, |w| w.canary.weight);
        if series.weights.last().map(|(_, w)| *w) != Some(weight) {
            push(&mut series.weights, (now, weight));
        }
        for run in &status.analysis_runs {
            for metric in &run.metrics {
                let points = series
                    .metrics
                    .entry((run.name.clone(), metric.name.clone()))
                    .or_default();
                let newest = points.last().map(|p| p.at);
                for m in &metric.measurements {
                    let Ok(at) = m.finished_at.parse::<Timestamp>() else {
                        continue;
                    };
                    let Some(value) = m.value.as_deref().and_then(first_number) else {
                        continue;
                    };
                    if newest.is_none_or(|n| at > n) {
                        push(
                            points,
                            Point {
                                at,
                                value,
                                phase: m.phase,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Forgets a deleted Rollout.
    pub fn forget(&mut self, namespace: &str, name: &str) {
        self.rollouts
            .remove(&(namespace.to_string(), name.to_string()));
    }

    pub fn series(&self, namespace: &str, name: &str) -> Series {
        self.rollouts
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

fn push<T>(points: &mut Vec<T>, point: T) {
    if points.len() == KEEP {
        points.remove(0);
    }
    points.push(point);
}

/// The first number of a value as the status prints it: `0.012`,
/// `[0.012,0.3]`, `[{"value":3}]` → 3.
pub fn first_number(value: &str) -> Option<f64> {
    let start = value.find(|c: char| c.is_ascii_digit() || c == '-' || c == '.')?;
    let rest = &value[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::types::{
        AnalysisRunStatus, Measurement, MetricResult, RolloutStatus, TrafficWeights,
        WeightDestination,
    };

    fn rollout(weight: i32, measured: &[(&str, &str)]) -> Rollout {
        let mut r: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {}, "template": {}, "strategy": {}}
        }))
        .unwrap();
        let mut status = RolloutStatus::default();
        status.canary.weights = Some(TrafficWeights {
            canary: WeightDestination {
                weight,
                ..Default::default()
            },
            stable: WeightDestination {
                weight: 100 - weight,
                ..Default::default()
            },
            ..Default::default()
        });
        status.analysis_runs = vec![AnalysisRunStatus {
            name: "step-1".into(),
            metrics: vec![MetricResult {
                name: "errors".into(),
                measurements: measured
                    .iter()
                    .map(|(at, v)| Measurement {
                        phase: AnalysisPhase::Successful,
                        value: Some(v.to_string()),
                        started_at: at.to_string(),
                        finished_at: at.to_string(),
                        message: None,
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }];
        r.status = Some(status);
        r
    }

    #[test]
    fn weights_are_kept_at_each_change_and_measurements_once() {
        let mut h = History::default();
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        h.observe(&rollout(0, &[]), t(0));
        h.observe(&rollout(20, &[("2026-01-01T00:00:10Z", "0.01")]), t(10));
        h.observe(&rollout(20, &[("2026-01-01T00:00:10Z", "0.01")]), t(20));
        h.observe(
            &rollout(
                40,
                &[
                    ("2026-01-01T00:00:10Z", "0.01"),
                    ("2026-01-01T00:00:40Z", "[0.02,0.5]"),
                ],
            ),
            t(40),
        );
        let s = h.series("shop", "web");
        assert_eq!(s.weights, vec![(t(0), 0), (t(10), 20), (t(40), 40)]);
        let points = &s.metrics[&("step-1".to_string(), "errors".to_string())];
        let values: Vec<f64> = points.iter().map(|p| p.value).collect();
        assert_eq!(values, vec![0.01, 0.02]);
        h.forget("shop", "web");
        assert!(h.series("shop", "web").weights.is_empty());
    }

    #[test]
    fn first_numbers() {
        assert_eq!(first_number("0.012"), Some(0.012));
        assert_eq!(first_number("[0.5,0.3]"), Some(0.5));
        assert_eq!(first_number("[{\"value\":3}]"), Some(3.0));
        assert_eq!(first_number("-1.5e-3"), Some(-0.0015));
        assert_eq!(first_number("[]"), None);
    }
}
