//! `gantry rollout get`: a Rollout with its ReplicaSets, analysis and
//! events, as text for people (terminal or CI log) or JSON for scripts.
//! Pure: the command fetches, this renders.

use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use rollout_core::display::{describe, header_conditions};
use rollout_core::types::{POD_TEMPLATE_HASH, Phase, Rollout, RolloutStatus};
use rollout_core::validate::{plan_of, validate};
use serde_json::{Value, json};

use rollout_core::ops::state;

/// What `get` shows.
pub struct View {
    pub rollout: Rollout,
    pub replica_sets: Vec<ReplicaSet>,
    pub events: Vec<Event>,
}

/// How many events and measurements per metric are shown.
const RECENT: usize = 8;

impl View {
    pub fn json(&self) -> Value {
        json!({
            "rollout": self.rollout,
            "replicaSets": self.replica_sets,
            "events": self.events,
        })
    }

    /// The text view; times relative to `now`.
    pub fn text(&self, now: Timestamp) -> String {
        let r = &self.rollout;
        let status = r.status.clone().unwrap_or_default();
        let mut out = String::new();
        let field = |out: &mut String, k: &str, v: &str| {
            let _ = writeln!(out, "{:<11} {v}", format!("{k}:"));
        };
        field(&mut out, "Name", r.metadata.name.as_deref().unwrap_or(""));
        field(
            &mut out,
            "Namespace",
            r.metadata.namespace.as_deref().unwrap_or(""),
        );
        field(&mut out, "Status", &state(r).1);
        if let Some(w) = &status.canary.weights {
            let proof = proof(w.verified);
            field(
                &mut out,
                "Traffic",
                &format!(
                    "canary {}% / stable {}%, {proof}",
                    w.canary.weight, w.stable.weight
                ),
            );
        } else if let Some(share) = pod_share(r, self.replica_sets.iter()) {
            field(&mut out, "Traffic", &share);
        }
        if let Some(roles) = ping_pong_roles(r) {
            field(&mut out, "Services", &roles);
        }
        if let Some(routes) = header_routes(r) {
            field(&mut out, "Routes", &routes);
        }
        if let Some(alb) = status.alb.as_ref().and_then(|a| a.message.as_deref()) {
            field(&mut out, "ALB", alb);
        }
        // What traffic or a scale-down waits for at the ALB, and since when.
        for g in &status.traffic_gates {
            let since = ago(&g.since, now).replace(" ago", "");
            field(&mut out, "Waiting", &format!("{} (for {since})", g.message));
        }
        field(&mut out, "Images", &r.images().join(", "));

        self.steps(&mut out);
        self.replica_sets(&mut out, &status);
        for run in &status.analysis_runs {
            let _ = writeln!(out, "\nAnalysis {} ({:?}):", run.name, run.phase);
            for m in &run.metrics {
                let _ = writeln!(
                    out,
                    "  {} {:?}: {} measured, {} successful, {} failed, {} inconclusive, {} errors",
                    m.name, m.phase, m.count, m.successful, m.failed, m.inconclusive, m.error
                );
                let recent = m.measurements.len().saturating_sub(RECENT);
                for measurement in &m.measurements[recent..] {
                    let _ = writeln!(
                        out,
                        "    {:>8}  {:<12} {}{}",
                        ago(&measurement.finished_at, now),
                        format!("{:?}", measurement.phase),
                        measurement.value.as_deref().unwrap_or("-"),
                        measurement
                            .message
                            .as_deref()
                            .map(|m| format!("  {m}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        if !self.events.is_empty() {
            let _ = writeln!(out, "\nEvents:");
            let mut events: Vec<&Event> = self.events.iter().collect();
            events.sort_by_key(|e| event_time(e));
            let recent = events.len().saturating_sub(RECENT);
            for e in &events[recent..] {
                let when = event_time(e).map_or("-".into(), |t| ago(&t.to_string(), now));
                let _ = writeln!(
                    out,
                    "  {when:>8}  {:<8} {:<24} {}",
                    e.type_.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.note.as_deref().unwrap_or("")
                );
            }
        }
        out
    }
}

/// The sections of `text`.
impl View {
    /// Every step: done (✔), current (►) or pending (·).
    fn steps(&self, out: &mut String) {
        match steps(&self.rollout) {
            Err(errors) => {
                let _ = writeln!(out, "\nInvalid spec:\n  {}", errors.join("\n  "));
            }
            Ok(steps) => {
                let _ = writeln!(out, "\nSteps:");
                for (i, (mark, step)) in steps.iter().enumerate() {
                    let _ = writeln!(out, "  {mark} {}. {step}", i + 1);
                }
            }
        }
    }

    fn replica_sets(&self, out: &mut String, status: &RolloutStatus) {
        if self.replica_sets.is_empty() {
            return;
        }
        let _ = writeln!(out, "\nReplicaSets:");
        let _ = writeln!(
            out,
            "  {:<32} {:<7} {:>7} {:>5} {:>9}",
            "NAME", "ROLE", "DESIRED", "READY", "AVAILABLE"
        );
        let mut sets: Vec<&ReplicaSet> = self.replica_sets.iter().collect();
        sets.sort_by_key(|rs| std::cmp::Reverse(rs.metadata.creation_timestamp.clone()));
        for rs in sets {
            let role = role(rs, status);
            let s = rs.status.clone().unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<32} {:<7} {:>7} {:>5} {:>9}",
                rs.metadata.name.as_deref().unwrap_or(""),
                role,
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                s.ready_replicas.unwrap_or(0),
                s.available_replicas.unwrap_or(0)
            );
        }
    }
}

/// Whether the load balancer was seen to apply the weights, in words.
pub fn proof(verified: Option<bool>) -> &'static str {
    match verified {
        Some(true) => "applied by the ALB (verified on AWS)",
        Some(false) => "not yet applied by the ALB",
        None => "set on the Ingress",
    }
}

/// With `pingPong`: which Service has which role now.
pub fn ping_pong_roles(rollout: &Rollout) -> Option<String> {
    let plan = plan_of(rollout).ok()?;
    let pp = plan.ping_pong.as_ref()?;
    let side = |name: &str| {
        if name == pp.ping_service {
            "ping"
        } else {
            "pong"
        }
    };
    Some(format!(
        "stable {} ({}), canary {} ({}) — pingPong swaps them at each promotion",
        plan.stable_service,
        side(&plan.stable_service),
        plan.canary_service,
        side(&plan.canary_service)
    ))
}

/// The header routes every Ingress carries and what each matches (as the
/// current step's plan has them): `testers (X-Canary: yes) to the canary`.
pub fn header_routes(rollout: &Rollout) -> Option<String> {
    let status = rollout.status.as_ref()?;
    let names = &status.canary.header_routes;
    if names.is_empty() {
        return None;
    }
    let plan = plan_of(rollout).ok();
    let index = status.current_step_index.unwrap_or(0).max(0) as usize;
    let routes = plan
        .as_ref()
        .map(|p| p.routes_at(index))
        .unwrap_or_default();
    let each: Vec<String> = names
        .iter()
        .map(|name| match routes.iter().find(|(n, _)| n == name) {
            Some((_, c)) => format!("{name} ({})", header_conditions(c)),
            None => name.clone(),
        })
        .collect();
    Some(format!("{} to the canary", each.join(", ")))
}

/// Without traffic routing the weight is a share of pods: `by pods:
/// canary 2 / stable 2 available` while a canary runs (None otherwise).
pub fn pod_share<'a>(
    rollout: &Rollout,
    replica_sets: impl Iterator<Item = &'a ReplicaSet>,
) -> Option<String> {
    let status = rollout.status.as_ref()?;
    let plan = validate(&rollout.spec).ok()?;
    if plan.alb.is_some()
        || status.stable_rs.is_none()
        || status.stable_rs == status.current_pod_hash
    {
        return None;
    }
    let (mut canary, mut stable) = (0, 0);
    for rs in replica_sets {
        let available = rs
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        match role(rs, status) {
            "canary" => canary += available,
            "stable" => stable += available,
            _ => {}
        }
    }
    Some(format!(
        "by pods (no traffic routing): canary {canary} / stable {stable} available"
    ))
}

/// Each step with its mark: done (✔), current (►) or pending (·); or
/// why the spec is invalid.
pub fn steps(rollout: &Rollout) -> Result<Vec<(char, String)>, Vec<String>> {
    let plan = validate(&rollout.spec)?;
    let status = rollout.status.clone().unwrap_or_default();
    let current = status.current_step_index.unwrap_or(0).max(0) as usize;
    let settled = matches!(status.phase, Some(Phase::Healthy));
    Ok(plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let mark = if i < current || settled {
                '✔'
            } else if i == current {
                '►'
            } else {
                '·'
            };
            (mark, describe(step))
        })
        .collect())
}

/// A ReplicaSet's part in its Rollout: `stable`, `canary` or `old`.
pub fn role(rs: &ReplicaSet, status: &RolloutStatus) -> &'static str {
    let hash = rs
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_TEMPLATE_HASH))
        .cloned();
    if hash.is_some() && hash == status.stable_rs {
        "stable"
    } else if hash.is_some() && hash == status.current_pod_hash {
        "canary"
    } else {
        "old"
    }
}

pub fn event_time(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
}

/// `45s ago`, `3m ago`, `2h ago`.
pub fn ago(rfc3339: &str, now: Timestamp) -> String {
    let Ok(t) = rfc3339.parse::<Timestamp>() else {
        return "-".into();
    };
    let secs = now.duration_since(t).as_secs().max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}
