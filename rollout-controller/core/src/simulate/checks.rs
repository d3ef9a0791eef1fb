//! What the simulation measures (analysis, as the glue measures it) and
//! checks after every action (no traffic to unavailable pods, no scale-down
//! of what still gets traffic).

use crate::analysis::{self, ArgContext, Verdict};
use crate::types::{AnalysisPhase, Measurement};
use crate::validate::validate;
use crate::world::{ServiceView, Taken};

use super::Simulation;

impl Simulation {
    /// Pods are taken away only from what no longer gets traffic.
    pub(super) fn check_scale_down(&mut self, name: &str) {
        let Some(hash) = self
            .world
            .replica_sets
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.hash.clone())
        else {
            return;
        };
        let selects = |s: &Option<ServiceView>| {
            s.as_ref().and_then(|s| s.hash.as_deref()) == Some(hash.as_str())
        };
        if selects(&self.world.stable_service) {
            self.violations
                .push(format!("scaled down {name}, the stable Service's pods"));
        }
        if selects(&self.world.canary_service) && self.canary_weight().unwrap_or(0) > 0 {
            self.violations
                .push(format!("scaled down {name}, which has canary traffic"));
        }
    }

    /// Available pods of every revision: what a Service of the user's
    /// selecting all of them (a basic canary without Services) reaches.
    pub(super) fn available_pods(&self) -> i32 {
        self.world.replica_sets.iter().map(|r| r.available).sum()
    }

    /// A scale-down never takes the last available pods away.
    pub(super) fn check_last_pods(&mut self, name: &str, before: i32) {
        if before > 0 && self.available_pods() == 0 {
            self.violations.push(format!(
                "scaled {name} down: no available pod of any revision left"
            ));
        }
    }

    /// What the glue does before deciding: measure the metrics due, with
    /// the same resolution, scheduling and judgement.
    pub(super) fn measure(&self) -> Vec<Taken> {
        let Some(status) = &self.rollout.status else {
            return Vec::new();
        };
        let Ok(plan) = validate(&self.rollout.spec) else {
            return Vec::new();
        };
        let ctx = ArgContext {
            rollout: Some(&self.rollout.metadata),
            stable_hash: status.stable_rs.as_deref(),
            latest_hash: status.current_pod_hash.as_deref(),
            secrets: None,
            alb: self.world.alb.as_ref().and_then(|a| a.as_ref().ok()),
        };
        let Ok(metrics) = analysis::resolve_plan(&plan, &self.world.templates, &ctx) else {
            return Vec::new();
        };
        let now = self.world.now.to_string();
        let mut taken = Vec::new();
        for run in &status.analysis_runs {
            let Some(run_metrics) = metrics.get(&run.name) else {
                continue;
            };
            for m in analysis::due(run, run_metrics, self.world.now) {
                let value = self.prometheus.get(&m.name);
                let verdict = match (self.verdict, value) {
                    (Some(phase), _) => Verdict {
                        phase,
                        message: None,
                    },
                    (None, Some(v)) => analysis::evaluate(m, v),
                    (None, None) => Verdict {
                        phase: AnalysisPhase::Error,
                        message: Some("cannot reach Prometheus".into()),
                    },
                };
                taken.push(Taken {
                    run: run.name.clone(),
                    pod_template_hash: run.pod_template_hash.clone(),
                    metric: m.name.clone(),
                    measurement: Measurement {
                        phase: verdict.phase,
                        value: value.map(|v| v.to_string()),
                        started_at: now.clone(),
                        finished_at: now.clone(),
                        message: verdict.message,
                    },
                });
            }
        }
        taken
    }

    /// No request may reach a Service whose pods are not available.
    pub(super) fn check_traffic(&mut self) {
        let available = |service: &Option<ServiceView>| {
            let hash = service.as_ref().and_then(|s| s.hash.clone());
            hash.and_then(|h| self.world.replica_sets.iter().find(|r| r.hash == h))
                .map_or(0, |r| r.available)
        };
        let weight = self.canary_weight().unwrap_or(0);
        let stable_selects = self
            .world
            .stable_service
            .as_ref()
            .is_some_and(|s| s.hash.is_some());
        if stable_selects && weight < 100 && available(&self.world.stable_service) == 0 {
            self.violations.push(format!(
                "{}% of traffic to stable with no available pods",
                100 - weight
            ));
        }
        if weight > 0 && available(&self.world.canary_service) == 0 {
            self.violations.push(format!(
                "{weight}% of traffic to the canary with no available pods"
            ));
        }
    }
}
