//! The controller's own Prometheus metrics (measurements of the services
//! under a canary are `rollout-metrics`'): reconcile latency and errors,
//! Rollouts by phase (as a count, and per Rollout so alerts can name it),
//! current canary weights, notifications, and the watches' state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use rollout_core::types::{Phase, Rollout, RolloutStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    namespace: String,
    rollout: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutPhaseLabels {
    namespace: String,
    rollout: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    destination: String,
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedLabels {
    destination: String,
    /// `queue_full`, `failed` (retries exhausted), `misconfigured`.
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabel {
    watch: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconcile_seconds: Histogram,
    decide_seconds: Histogram,
    reconcile_errors: Counter,
    by_phase: Family<PhaseLabel, Gauge>,
    phase: Family<RolloutPhaseLabels, Gauge>,
    canary_weight: Family<RolloutLabels, Gauge>,
    phases: Arc<Mutex<HashMap<(String, String), Phase>>>,
    notifications_sent: Family<NotificationLabels, Counter>,
    notifications_dropped: Family<DroppedLabels, Counter>,
    notification_seconds: Histogram,
    watch_up: Family<WatchLabel, Gauge>,
    watch_failures: Family<WatchLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gantry_rollout_controller");
        // 0.1 ms to 13 s: a reconcile from the caches takes well under a millisecond.
        let reconcile_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let decide_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let reconcile_errors = Counter::default();
        let by_phase = Family::<PhaseLabel, Gauge>::default();
        let phase = Family::<RolloutPhaseLabels, Gauge>::default();
        let canary_weight = Family::<RolloutLabels, Gauge>::default();
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one Rollout",
            reconcile_seconds.clone(),
        );
        registry.register(
            "decide_duration_seconds",
            "Time to observe a Rollout's world from the caches and decide, without API calls",
            decide_seconds.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed",
            reconcile_errors.clone(),
        );
        registry.register("rollouts", "Rollouts by phase", by_phase.clone());
        registry.register(
            "rollout_phase",
            "1 for each Rollout's current phase",
            phase.clone(),
        );
        registry.register(
            "canary_weight",
            "Percent of traffic sent to the canary",
            canary_weight.clone(),
        );
        let notifications_sent = Family::<NotificationLabels, Counter>::default();
        let notifications_dropped = Family::<DroppedLabels, Counter>::default();
        // 10 ms to 10 min: retries with backoff can take minutes.
        let notification_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register(
            "notifications_sent",
            "Notifications a destination accepted",
            notifications_sent.clone(),
        );
        registry.register(
            "notifications_dropped",
            "Notifications not delivered: queue full, retries exhausted, or a destination misconfigured",
            notifications_dropped.clone(),
        );
        registry.register(
            "notification_delivery_seconds",
            "From the reconcile that saw an occurrence to the destination accepting it",
            notification_seconds.clone(),
        );
        let watch_up = Family::<WatchLabel, Gauge>::default();
        let watch_failures = Family::<WatchLabel, Counter>::default();
        registry.register(
            "watch_up",
            "1 while a watch follows the cluster; 0 while it is down or listing again (decisions wait)",
            watch_up.clone(),
        );
        registry.register(
            "watch_failures",
            "Watches that failed and were listed again",
            watch_failures.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            watch_up,
            watch_failures,
            notifications_sent,
            notifications_dropped,
            notification_seconds,
            reconcile_seconds,
            decide_seconds,
            reconcile_errors,
            by_phase,
            phase,
            canary_weight,
            phases: Arc::default(),
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, took: Duration, failed: bool) {
        self.reconcile_seconds.observe(took.as_secs_f64());
        if failed {
            self.reconcile_errors.inc();
        }
    }

    pub fn observe_decide(&self, took: Duration) {
        self.decide_seconds.observe(took.as_secs_f64());
    }

    pub fn record_rollout(&self, rollout: &Rollout, status: &RolloutStatus) {
        let key = (rollout.namespace().unwrap_or_default(), rollout.name_any());
        let weight = status
            .canary
            .weights
            .as_ref()
            .map_or(0, |w| w.canary.weight);
        self.canary_weight
            .get_or_create(&RolloutLabels {
                namespace: key.0.clone(),
                rollout: key.1.clone(),
            })
            .set(weight.into());
        let mut phases = self.phases.lock().expect("metrics lock");
        let before = match status.phase {
            Some(p) => phases.insert(key.clone(), p),
            None => phases.remove(&key),
        };
        if before != status.phase {
            if let Some(p) = before {
                self.phase.remove(&phase_labels(&key, p));
            }
            if let Some(p) = status.phase {
                self.phase.get_or_create(&phase_labels(&key, p)).set(1);
            }
        }
        self.count_phases(&phases);
    }

    pub fn forget_rollout(&self, rollout: &Rollout) {
        let key = (rollout.namespace().unwrap_or_default(), rollout.name_any());
        self.canary_weight.remove(&RolloutLabels {
            namespace: key.0.clone(),
            rollout: key.1.clone(),
        });
        let mut phases = self.phases.lock().expect("metrics lock");
        if let Some(p) = phases.remove(&key) {
            self.phase.remove(&phase_labels(&key, p));
        }
        self.count_phases(&phases);
    }

    fn count_phases(&self, phases: &HashMap<(String, String), Phase>) {
        for phase in [
            Phase::Progressing,
            Phase::Paused,
            Phase::Healthy,
            Phase::Degraded,
        ] {
            let n = phases.values().filter(|p| **p == phase).count();
            self.by_phase
                .get_or_create(&PhaseLabel {
                    phase: format!("{phase:?}"),
                })
                .set(n as i64);
        }
    }

    pub fn notification_sent(&self, destination: &str, trigger: &str, took: Duration) {
        let labels = NotificationLabels {
            destination: destination.to_string(),
            trigger: trigger.to_string(),
        };
        self.notifications_sent.get_or_create(&labels).inc();
        self.notification_seconds.observe(took.as_secs_f64());
    }

    pub fn notification_dropped(&self, destination: &str, reason: &str) {
        let labels = DroppedLabels {
            destination: destination.to_string(),
            reason: reason.to_string(),
        };
        self.notifications_dropped.get_or_create(&labels).inc();
    }

    /// A watch's state: up, or not (a failure when `failed`).
    pub fn watch_state(&self, watch: &str, up: bool, failed: bool) {
        let label = WatchLabel {
            watch: watch.to_string(),
        };
        self.watch_up.get_or_create(&label).set(up.into());
        if failed {
            self.watch_failures.get_or_create(&label).inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

fn phase_labels((namespace, rollout): &(String, String), phase: Phase) -> RolloutPhaseLabels {
    RolloutPhaseLabels {
        namespace: namespace.clone(),
        rollout: rollout.clone(),
        phase: format!("{phase:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_metric_with_current_values() {
        let m = Metrics::default();
        let rollout: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "backend", "namespace": "shop"},
            "spec": {"selector": {}, "template": {}, "strategy": {}}
        }))
        .unwrap();
        let mut status = RolloutStatus {
            phase: Some(Phase::Paused),
            ..Default::default()
        };
        status.canary.weights = Some(rollout_core::types::TrafficWeights {
            canary: rollout_core::types::WeightDestination {
                weight: 20,
                ..Default::default()
            },
            ..Default::default()
        });
        m.record_rollout(&rollout, &status);
        m.observe_reconcile(Duration::from_millis(3), true);
        let text = m.render();
        for want in [
            "gantry_rollout_controller_reconcile_duration_seconds_count 1",
            "gantry_rollout_controller_reconcile_errors_total 1",
            "gantry_rollout_controller_rollouts{phase=\"Paused\"} 1",
            "gantry_rollout_controller_rollouts{phase=\"Healthy\"} 0",
            "gantry_rollout_controller_rollout_phase{namespace=\"shop\",rollout=\"backend\",phase=\"Paused\"} 1",
            "gantry_rollout_controller_canary_weight{namespace=\"shop\",rollout=\"backend\"} 20",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        status.phase = Some(Phase::Degraded);
        m.record_rollout(&rollout, &status);
        let text = m.render();
        assert!(
            text.contains("rollout=\"backend\",phase=\"Degraded\"} 1"),
            "{text}"
        );
        assert!(!text.contains("phase=\"Paused\"} 1"), "{text}");
        m.forget_rollout(&rollout);
        let text = m.render();
        assert!(text.contains("gantry_rollout_controller_rollouts{phase=\"Degraded\"} 0"));
        assert!(!text.contains("rollout_phase{"), "{text}");
    }
}
