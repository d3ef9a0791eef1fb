//! How steps and durations read to people, in plans, status messages and
//! notifications alike (below `plan`, `decide` and `notify`, which all
//! use it).

use std::time::Duration;

use crate::alb::routes::HeaderCondition;
use crate::validate::{CanaryScale, StepKind};

/// `2m`, `1h 30m`, `45s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let parts = [(s / 3600, "h"), (s % 3600 / 60, "m"), (s % 60, "s")];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".into()
    } else {
        text.join(" ")
    }
}

/// `X-Canary: yes | on and User-Agent: *Mobile*` (the ALB's matching).
pub fn header_conditions(conditions: &[HeaderCondition]) -> String {
    let each: Vec<String> = conditions
        .iter()
        .map(|c| {
            let h = &c.http_header_config;
            format!("{}: {}", h.http_header_name, h.values.join(" | "))
        })
        .collect();
    each.join(" and ")
}

/// A step as people write it: `setWeight 10`, `pause 2m`, `analysis errors`.
pub fn describe(step: &StepKind) -> String {
    match step {
        StepKind::SetWeight(w) => format!("setWeight {w}"),
        StepKind::SetCanaryScale(CanaryScale::Replicas(n)) => format!("setCanaryScale {n} pod(s)"),
        StepKind::SetCanaryScale(CanaryScale::Weight(w)) => {
            format!("setCanaryScale {w}% of the pods")
        }
        StepKind::SetCanaryScale(CanaryScale::MatchTrafficWeight) => {
            "setCanaryScale: follow the weight".into()
        }
        StepKind::SetHeaderRoute(r) if r.conditions.is_empty() => {
            format!("setHeaderRoute {}: removed", r.name)
        }
        StepKind::SetHeaderRoute(r) => format!(
            "setHeaderRoute {}: {} to the canary",
            r.name,
            header_conditions(&r.conditions)
        ),
        StepKind::Pause(Some(d)) => format!("pause {}", human(*d)),
        StepKind::Pause(None) => "pause until promoted".into(),
        StepKind::Analysis(a) => {
            let names: Vec<&str> = a
                .templates
                .iter()
                .map(|t| t.template_name.as_str())
                .collect();
            format!("analysis {}", names.join(", "))
        }
    }
}
