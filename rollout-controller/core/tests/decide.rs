//! Table and scenario tests of the pure canary decision, with no I/O: the
//! simulated cluster (`simulate`) applies the decided actions (and, unless
//! told not to, makes pods available at once), and every scenario checks
//! that traffic never goes to a Service without available pods.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;
use rollout_core::analysis::QueryValue;
use rollout_core::decide::{Action, Decision, decide};
use rollout_core::simulate::Simulation;
use rollout_core::types::{AnalysisPhase, AnalysisTemplate, Phase, Rollout, RolloutStatus};
use rollout_core::validate::validate;
use rollout_core::world::Observed;

mod common;
use common::{alb_routing, rollout};

const KEY: &str = "alb.ingress.kubernetes.io/actions.backend-service";

const STEPS: &str = "[{setWeight: 20}, {pause: {}}, {setWeight: 50}, {pause: {duration: 30s}}]";

/// The simulated cluster, failing the test at the first broken invariant.
struct Sim(Simulation);

impl Deref for Sim {
    type Target = Simulation;
    fn deref(&self) -> &Simulation {
        &self.0
    }
}

impl DerefMut for Sim {
    fn deref_mut(&mut self) -> &mut Simulation {
        &mut self.0
    }
}

impl Sim {
    fn new(rollout: Rollout) -> Sim {
        Sim(Simulation::new(rollout))
    }

    fn step(&mut self) -> Decision {
        let d = self.0.step();
        self.assert_safe();
        d
    }

    fn settle(&mut self) -> Decision {
        let d = self
            .0
            .settle()
            .unwrap_or_else(|| panic!("did not settle: {:#?}", self.rollout.status));
        self.assert_safe();
        d
    }

    fn assert_safe(&self) {
        assert!(
            self.violations.is_empty(),
            "{:?}\n{:#?}",
            self.violations,
            self.world
        );
    }

    fn set_image(&mut self, image: &str) {
        self.rollout.spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
        *self.rollout.metadata.generation.as_mut().unwrap() += 1;
    }

    fn status(&mut self) -> &mut rollout_core::types::RolloutStatus {
        self.rollout.status.as_mut().unwrap()
    }

    fn advance(&mut self, secs: i64) {
        self.0.advance(SignedDuration::from_secs(secs));
    }

    fn message(&self) -> String {
        self.rollout
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default()
    }

    fn step_index(&self) -> i32 {
        self.rollout
            .status
            .as_ref()
            .unwrap()
            .current_step_index
            .unwrap()
    }

    fn service_hash(&self, stable: bool) -> Option<String> {
        let s = if stable {
            &self.world.stable_service
        } else {
            &self.world.canary_service
        };
        s.as_ref().unwrap().hash.clone()
    }
}

/// A Rollout deployed once and settled on `backend:1`.
fn deployed(steps: &str) -> (Sim, String) {
    let mut sim = Sim::new(rollout(steps));
    sim.settle();
    let stable = sim.hash();
    (sim, stable)
}

#[test]
fn first_deploy_goes_straight_to_stable_and_a_settled_rollout_writes_nothing() {
    let (mut sim, stable) = deployed(STEPS);
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    let status = sim.rollout.status.clone().unwrap();
    assert_eq!(status.stable_rs.as_deref(), Some(stable.as_str()));
    assert_eq!(status.current_step_index, Some(4));
    assert_eq!(status.step_display.as_deref(), Some("4/4"));
    assert_eq!(sim.replicas(&stable), 5);
    assert_eq!(sim.service_hash(true), Some(stable.clone()));
    assert_eq!(sim.service_hash(false), Some(stable.clone()));
    assert_eq!(sim.canary_weight(), Some(0));
    assert_eq!(status.canary.weights.as_ref().unwrap().stable.weight, 100);
    let writes = sim.writes;
    for _ in 0..3 {
        let d = sim.step();
        assert!(d.actions.is_empty() && d.events.is_empty() && d.requeue_after.is_none());
    }
    assert_eq!(
        sim.writes, writes,
        "a settled Rollout causes zero API writes"
    );
}

#[test]
fn a_full_canary_walks_every_step_and_never_scales_down_early() {
    let (mut sim, stable) = deployed(STEPS);
    sim.set_image("backend:2");
    let canary = sim.hash();

    // setWeight 20 → 1 of 5 pods, then the pause waits for promote.
    sim.settle();
    assert_eq!(sim.replicas(&canary), 1);
    assert_eq!(
        sim.replicas(&stable),
        5,
        "the stable ReplicaSet keeps its replicas"
    );
    assert_eq!(sim.canary_weight(), Some(20));
    assert_eq!(sim.service_hash(false), Some(canary.clone()));
    assert_eq!(sim.phase(), Some(Phase::Paused));
    assert_eq!(sim.step_index(), 1);
    sim.advance(86_400);
    assert!(
        sim.step().actions.is_empty(),
        "an untimed pause waits for promote, however long"
    );
    assert_eq!(sim.phase(), Some(Phase::Paused));

    // Promote → setWeight 50 (3 pods) → timed pause.
    sim.promote();
    let d = sim.settle();
    assert_eq!(sim.replicas(&canary), 3);
    assert_eq!(sim.canary_weight(), Some(50));
    assert_eq!(sim.step_index(), 3);
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(30)),
        "a timed pause requeues for its deadline"
    );
    sim.advance(20);
    assert_eq!(sim.settle().requeue_after, Some(Duration::from_secs(10)));

    // Deadline passed → completion: full size, stable Service switched, 0/100.
    sim.advance(10);
    let d = sim.settle();
    let status = sim.rollout.status.clone().unwrap();
    assert_eq!(status.stable_rs.as_deref(), Some(canary.as_str()));
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(sim.replicas(&canary), 5);
    assert_eq!(sim.service_hash(true), Some(canary.clone()));
    assert_eq!(sim.canary_weight(), Some(0));
    // The old stable keeps running for scaleDownDelaySeconds (30 by default).
    assert_eq!(sim.replicas(&stable), 5);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(30)));
    sim.advance(30);
    sim.settle();
    assert_eq!(sim.replicas(&stable), 0);
    let writes = sim.writes;
    sim.step();
    assert_eq!(sim.writes, writes);
}

#[test]
fn with_no_scale_down_delay_old_pods_go_only_after_traffic_left() {
    let mut r = rollout("[{setWeight: 40}, {setWeight: 80}]");
    r.spec
        .strategy
        .canary
        .as_mut()
        .unwrap()
        .scale_down_delay_seconds = Some(0);
    let mut sim = Sim::new(r);
    sim.settle();
    let stable = sim.hash();
    sim.set_image("backend:2");
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(sim.replicas(&stable), 0);
}

#[test]
fn scale_up_happens_before_traffic_moves() {
    let (mut sim, _) = deployed("[{setWeight: 20}, {setWeight: 60}]");
    sim.kubelet = false;
    sim.set_image("backend:2");
    let canary = sim.hash();
    // The canary Service first, so that the LB controller's webhook sees
    // the pods it selects as they are created (readiness gates).
    let d = sim.step();
    assert_eq!(
        d.actions,
        vec![
            Action::SetServiceSelector {
                service: "backend-service-canary".into(),
                hash: canary.clone(),
                at: sim.world.now,
            },
            Action::CreateReplicaSet {
                hash: canary.clone(),
                replicas: 1,
                pod_metadata: Default::default(),
                pre_stop: None,
            }
        ]
    );
    let d = sim.step();
    assert!(
        d.actions.is_empty(),
        "nothing moves while the canary is not available: {:?}",
        d.actions
    );
    sim.world
        .replica_sets
        .iter_mut()
        .for_each(|r| r.available = r.replicas);
    // The EndpointSlices follow.
    sim.advance(0);
    let d = sim.step();
    assert!(
        matches!(&d.actions[..], [Action::SetIngressAction { .. }]),
        "{:?}",
        d.actions
    );
    // Next step: scale to 3 first, and no weight change until they are available.
    let d = sim.step();
    assert_eq!(
        d.actions,
        vec![Action::ScaleReplicaSet {
            name: format!("backend-{canary}"),
            replicas: 3
        }]
    );
    assert!(sim.step().actions.is_empty());
    assert_eq!(sim.canary_weight(), Some(20));
}

#[test]
fn abort_at_any_step_sends_all_traffic_to_stable_at_once() {
    for abort_after in 1..7 {
        let (mut sim, stable) = deployed(STEPS);
        sim.set_image("backend:2");
        let canary = sim.hash();
        for i in 0..abort_after {
            sim.step();
            if i == 3 {
                sim.promote();
            }
        }
        let canary_pods = sim.replicas(&canary);
        sim.status().abort = true;
        let d = sim.step();
        assert_eq!(
            sim.phase(),
            Some(Phase::Degraded),
            "after {abort_after} reconciles"
        );
        assert!(d.events.iter().any(|(r, _)| r == "RolloutAborted"));
        assert_eq!(
            sim.canary_weight().unwrap_or(0),
            0,
            "weights back to stable in the first reconcile"
        );
        assert_eq!(sim.service_hash(true), Some(stable.clone()));
        // The canary is scaled down only after abortScaleDownDelaySeconds.
        sim.settle();
        assert_eq!(
            sim.replicas(&canary),
            canary_pods,
            "the canary keeps running for the delay"
        );
        sim.advance(30);
        sim.settle();
        assert!(
            sim.replicas(&canary) <= 0,
            "canary scaled down after the delay"
        );
        assert_eq!(sim.phase(), Some(Phase::Degraded));
        assert_eq!(sim.replicas(&stable), 5);

        // Retry: the steps start again.
        sim.status().abort = false;
        sim.settle();
        assert_eq!(sim.step_index(), 1, "retry restarts at the first step");
        assert_eq!(sim.canary_weight(), Some(20));
        assert_eq!(sim.phase(), Some(Phase::Paused));
    }
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let (mut sim, _) = deployed(STEPS);
    sim.set_image("backend:2");
    let canary = sim.hash();
    sim.settle();
    assert_eq!(sim.step_index(), 1);
    sim.status().promote_full = true;
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(
        sim.rollout.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(canary.as_str())
    );
    assert!(!sim.rollout.status.as_ref().unwrap().promote_full);
}

#[test]
fn a_template_change_mid_rollout_restarts_with_the_new_canary() {
    let (mut sim, stable) = deployed(STEPS);
    sim.set_image("backend:2");
    let first = sim.hash();
    sim.settle();
    sim.promote();
    sim.settle();
    assert_eq!(sim.canary_weight(), Some(50));
    sim.set_image("backend:3");
    let second = sim.hash();
    let d = sim.step();
    assert!(
        d.events
            .iter()
            .any(|(r, m)| r == "RolloutUpdated" && m.contains("mid-rollout")),
        "{:?}",
        d.events
    );
    assert_eq!(
        sim.canary_weight(),
        Some(0),
        "traffic leaves the old canary first"
    );
    sim.settle();
    assert_eq!(sim.service_hash(false), Some(second.clone()));
    assert_eq!(sim.canary_weight(), Some(20));
    assert_eq!(sim.step_index(), 1);
    assert_eq!(sim.replicas(&stable), 5);
    sim.advance(30);
    sim.settle();
    assert_eq!(
        sim.replicas(&first),
        0,
        "the abandoned canary is scaled down after the delay"
    );
}

#[test]
fn reverting_to_the_stable_template_is_a_fast_rollback() {
    let (mut sim, stable) = deployed(STEPS);
    sim.set_image("backend:2");
    let canary = sim.hash();
    sim.settle();
    sim.promote();
    sim.settle();
    assert_eq!(sim.canary_weight(), Some(50));
    sim.set_image("backend:1");
    assert_eq!(sim.hash(), stable);
    let d = sim.step();
    assert!(d.events.iter().any(|(r, _)| r == "RollbackToStable"));
    sim.settle();
    assert_eq!(sim.canary_weight(), Some(0));
    assert_eq!(sim.service_hash(false), Some(stable.clone()));
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(sim.step_index(), 4, "no canary steps for a rollback");
    assert_eq!(sim.replicas(&canary), 3, "scale-down waits for the delay");
    sim.advance(30);
    sim.settle();
    assert_eq!(sim.replicas(&canary), 0);
}

#[test]
fn missing_references_and_invalid_specs_are_degraded_with_a_message() {
    let mut sim = Sim::new(rollout(STEPS));
    sim.world.canary_service = None;
    let d = sim.step();
    assert!(d.actions.is_empty());
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    assert_eq!(
        sim.rollout.status.as_ref().unwrap().message.as_deref(),
        Some("ReferenceMissing: canaryService \"backend-service-canary\" not found")
    );

    let mut sim = Sim::new(rollout(STEPS));
    sim.world.ingresses[0].rules.clear();
    sim.step();
    let message = sim
        .rollout
        .status
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(
        message.contains(
            "no rule backed by service \"backend-service\" with port name \"use-annotation\""
        ),
        "{message}"
    );

    let cases = [
        (
            "[{setWeight: 150}]",
            "steps[0]: setWeight must be between 0 and 100, got 150",
        ),
        (
            "[{setWeight: 10, pause: {}}]",
            "steps[0]: exactly one of setWeight, pause, analysis, setCanaryScale or setHeaderRoute",
        ),
        (
            "[{pause: {duration: 5x}}]",
            "pause.duration: expected seconds or a duration like 30s, 5m, 1h, got \"5x\"",
        ),
        (
            "[{setMirrorRoute: {name: x}}]",
            "steps[0]: setMirrorRoute steps are not supported by gantry: the ALB cannot mirror traffic",
        ),
        ("[{experiment: {}}]", "experiment steps are not supported"),
        (
            "[{analysis: {templates: []}}]",
            "steps[0].analysis.templates: at least one template is required",
        ),
    ];
    for (steps, want) in cases {
        let mut sim = Sim::new(rollout(steps));
        let d = sim.step();
        assert!(d.actions.is_empty(), "{steps}");
        let status = sim.rollout.status.clone().unwrap();
        assert_eq!(status.phase, Some(Phase::Degraded));
        let invalid = status
            .conditions
            .iter()
            .find(|c| c.type_ == "InvalidSpec")
            .unwrap();
        assert_eq!(invalid.status, "True");
        assert!(
            invalid.message.as_deref().unwrap().contains(want),
            "{steps}: {invalid:?}"
        );
    }
    let mut blue_green = rollout(STEPS);
    blue_green.spec.strategy.blue_green = Some(serde_json::json!({"activeService": "x"}));
    let mut sim = Sim::new(blue_green);
    sim.step();
    assert!(
        sim.message()
            .contains("spec.strategy: give canary or blueGreen, not both"),
        "{}",
        sim.message()
    );
    blue_green = sim.rollout.clone();
    blue_green.spec.strategy.canary = None;
    let mut sim = Sim::new(blue_green);
    sim.step();
    assert!(sim.message().contains(
        "spec.strategy.blueGreen: the blueGreen strategy is not supported by gantry: use strategy.canary (setWeight and pause steps)"
    ));
}

#[test]
fn restarting_at_any_point_resumes_from_the_status_alone() {
    // The reference run, recording the persisted state at every reconcile.
    let (mut sim, _) = deployed(STEPS);
    sim.set_image("backend:2");
    let mut checkpoints = Vec::new();
    for i in 0..40 {
        checkpoints.push((sim.rollout.clone(), sim.world.clone()));
        sim.step();
        if i == 6 {
            sim.promote();
        }
        sim.advance(5);
    }
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    // A restarted controller knows only what the API server stores: the
    // Rollout as JSON and the observed objects. It decides exactly the same.
    for (rollout, world) in checkpoints {
        let stored: Rollout =
            serde_json::from_str(&serde_json::to_string(&rollout).unwrap()).unwrap();
        assert_eq!(decide(&stored, &world), decide(&rollout, &world));
    }
}

#[test]
fn weights_and_history_are_kept_in_line() {
    // Someone edits the Ingress by hand during a pause: the weight is restored.
    let (mut sim, _) = deployed(STEPS);
    sim.set_image("backend:2");
    sim.settle();
    sim.world.ingresses[0].annotations.remove(KEY);
    sim.settle();
    assert_eq!(sim.canary_weight(), Some(20));
    // revisionHistoryLimit: old scaled-down ReplicaSets beyond it are deleted.
    let mut r = rollout("[{setWeight: 50}]");
    r.spec.revision_history_limit = Some(1);
    let mut sim = Sim::new(r);
    sim.settle();
    for v in 2..6 {
        sim.set_image(&format!("backend:{v}"));
        sim.settle();
        sim.advance(31);
        sim.settle();
    }
    let idle = sim
        .world
        .replica_sets
        .iter()
        .filter(|r| r.replicas == 0)
        .count();
    assert_eq!(idle, 1, "{:#?}", sim.world.replica_sets);
    assert_eq!(sim.world.replica_sets.len(), 2);
}

// ---------------------------------------------------------------------------
// Analysis: how measurements drive steps, pauses and aborts.

/// An error-rate template: `count` measurements `interval` apart.
fn template(extra: &str) -> AnalysisTemplate {
    let yaml = format!(
        r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: error-rate, namespace: shop}}
spec:
  args: [{{name: service}}, {{name: hash}}]
  metrics:
  - name: error-rate
    successCondition: result[0] < 0.05
    provider:
      prometheus:
        address: http://prometheus:9090
        query: sum(rate(errors{{service="{{{{args.service}}}}",hash="{{{{args.hash}}}}"}}[1m]))
    {extra}
"#
    );
    serde_yaml::from_str(&yaml).unwrap()
}

const ANALYSIS: &str = "{analysis: {templates: [{templateName: error-rate}], args: [{name: service, value: backend}, {name: hash, valueFrom: {podTemplateHashValue: Latest}}]}}";

fn analysed(steps: &str, extra: &str) -> (Sim, String) {
    let (mut sim, stable) = deployed(&steps.replace("ANALYSIS", ANALYSIS));
    sim.world
        .templates
        .insert("error-rate".into(), template(extra).spec);
    (sim, stable)
}

fn run<'a>(status: &'a RolloutStatus, name: &str) -> &'a rollout_core::types::AnalysisRunStatus {
    status
        .analysis_runs
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no run {name}: {:#?}", status.analysis_runs))
}

#[test]
fn a_successful_analysis_step_lets_the_canary_continue() {
    let (mut sim, _) = analysed("[{setWeight: 20}, ANALYSIS, {setWeight: 50}]", "");
    sim.prometheus
        .insert("error-rate".into(), QueryValue::Vector(vec![0.01]));
    sim.set_image("backend:2");
    let canary = sim.hash();
    sim.settle();
    assert_eq!(
        sim.phase(),
        Some(Phase::Healthy),
        "{:?}",
        sim.rollout.status
    );
    let status = sim.rollout.status.clone().unwrap();
    let r = run(&status, "step-1");
    assert_eq!(r.phase, AnalysisPhase::Successful);
    assert_eq!(r.pod_template_hash, canary);
    let metric = &r.metrics[0];
    assert_eq!(
        metric.query,
        format!("sum(rate(errors{{service=\"backend\",hash=\"{canary}\"}}[1m]))"),
        "the resolved query is recorded"
    );
    assert_eq!(metric.measurements[0].value.as_deref(), Some("[0.01]"));
    assert_eq!((metric.count, metric.successful), (1, 1));
}

#[test]
fn an_analysis_holds_the_weight_until_its_measurements_are_in() {
    let (mut sim, _) = analysed(
        "[{setWeight: 20}, ANALYSIS, {setWeight: 50}]",
        "interval: 60s\n    count: 3\n    initialDelay: 30s",
    );
    sim.prometheus
        .insert("error-rate".into(), QueryValue::Vector(vec![0.01]));
    sim.set_image("backend:2");
    let d = sim.settle();
    assert_eq!(sim.canary_weight(), Some(20));
    assert_eq!(sim.step_index(), 1);
    assert_eq!(sim.phase(), Some(Phase::Progressing));
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(30)),
        "initialDelay"
    );
    for (secs, taken) in [(30, 1), (59, 1), (1, 2), (60, 3)] {
        sim.advance(secs);
        sim.settle();
        let status = sim.rollout.status.clone().unwrap();
        assert_eq!(
            run(&status, "step-1").metrics[0].count,
            taken,
            "after +{secs}s"
        );
    }
    assert_eq!(sim.phase(), Some(Phase::Healthy));
}

#[test]
fn failures_past_the_limit_abort_and_send_traffic_back_to_stable() {
    let (mut sim, stable) = analysed(
        "[{setWeight: 20}, ANALYSIS, {setWeight: 50}]",
        "interval: 60s\n    count: 5\n    failureLimit: 1",
    );
    sim.prometheus
        .insert("error-rate".into(), QueryValue::Vector(vec![0.2]));
    sim.set_image("backend:2");
    let canary = sim.hash();
    sim.settle();
    let status = sim.rollout.status.clone().unwrap();
    assert_eq!(
        run(&status, "step-1").phase,
        AnalysisPhase::Running,
        "one failure is tolerated"
    );
    assert_eq!(sim.canary_weight(), Some(20));
    sim.advance(60);
    let d = sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    assert_eq!(sim.canary_weight(), Some(0));
    assert_eq!(sim.service_hash(true), Some(stable.clone()));
    let status = sim.rollout.status.clone().unwrap();
    assert!(status.abort);
    let message = status.message.unwrap();
    assert!(
        message.contains("analysis step-1 failed")
            && message.contains("failed (2) > failureLimit (1)"),
        "{message}"
    );
    assert!(d.events.is_empty() || sim.writes > 0);
    // The canary is scaled down after abortScaleDownDelaySeconds (30 s).
    sim.advance(31);
    sim.settle();
    assert_eq!(sim.replicas(&canary), 0);
    assert_eq!(sim.replicas(&stable), 5);
}

#[test]
fn empty_or_nan_results_pause_as_inconclusive_until_promoted() {
    for value in [
        QueryValue::Vector(vec![]),
        QueryValue::Vector(vec![f64::NAN]),
    ] {
        let (mut sim, _) = analysed("[{setWeight: 20}, ANALYSIS, {setWeight: 50}]", "");
        sim.prometheus.insert("error-rate".into(), value.clone());
        sim.set_image("backend:2");
        sim.settle();
        assert_eq!(sim.phase(), Some(Phase::Paused), "{value:?}");
        assert_eq!(sim.canary_weight(), Some(20), "never a pass");
        let status = sim.rollout.status.clone().unwrap();
        assert_eq!(run(&status, "step-1").phase, AnalysisPhase::Inconclusive);
        let message = status.message.unwrap();
        assert!(
            message.contains("inconclusive") && message.contains("promote"),
            "{message}"
        );
        assert_eq!(status.pause_conditions[0].reason, "InconclusiveAnalysisRun");
        sim.advance(3600);
        assert!(sim.step().actions.is_empty(), "waits for a human");
        sim.promote();
        sim.settle();
        assert_eq!(sim.phase(), Some(Phase::Healthy), "{value:?}");
    }
}

#[test]
fn prometheus_errors_past_the_consecutive_limit_abort() {
    let (mut sim, _) = analysed("[{setWeight: 20}, ANALYSIS]", "consecutiveErrorLimit: 2");
    sim.set_image("backend:2");
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Progressing), "one error");
    sim.advance(9);
    sim.settle();
    sim.advance(1);
    sim.settle();
    assert_eq!(
        sim.phase(),
        Some(Phase::Progressing),
        "two errors: retried after 10s"
    );
    sim.advance(10);
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    let status = sim.rollout.status.clone().unwrap();
    let r = run(&status, "step-1");
    assert_eq!(r.phase, AnalysisPhase::Error);
    assert_eq!(r.metrics[0].error, 3);
    assert!(
        status.message.unwrap().contains(
            "consecutive errors (3) > consecutiveErrorLimit (2): cannot reach Prometheus"
        )
    );
    assert_eq!(sim.canary_weight(), Some(0));
}

#[test]
fn background_analysis_runs_from_its_starting_step_and_aborts_on_failure() {
    let steps = "[{setWeight: 20}, {pause: {}}, {setWeight: 50}, {pause: {}}]";
    let (mut sim, _) = deployed(steps);
    sim.rollout.spec.strategy.canary.as_mut().unwrap().analysis = Some(
        serde_yaml::from_str(
            "{startingStep: 2, templates: [{templateName: error-rate}], args: [{name: service, value: backend}, {name: hash, value: x}]}",
        )
        .unwrap(),
    );
    sim.world
        .templates
        .insert("error-rate".into(), template("interval: 30s").spec);
    sim.prometheus
        .insert("error-rate".into(), QueryValue::Vector(vec![0.01]));
    sim.set_image("backend:2");
    sim.settle();
    assert_eq!(sim.step_index(), 1);
    assert!(
        sim.rollout
            .status
            .as_ref()
            .unwrap()
            .analysis_runs
            .is_empty(),
        "not before startingStep"
    );
    sim.promote();
    sim.settle();
    assert_eq!(sim.step_index(), 3);
    assert_eq!(sim.canary_weight(), Some(50));
    sim.advance(30);
    sim.settle();
    let status = sim.rollout.status.clone().unwrap();
    assert_eq!(run(&status, "background").metrics[0].successful, 2);
    assert_eq!(
        sim.phase(),
        Some(Phase::Paused),
        "the pause step still waits"
    );
    // The error rate climbs while paused: the background run aborts the canary.
    sim.prometheus
        .insert("error-rate".into(), QueryValue::Vector(vec![0.3]));
    sim.advance(30);
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    assert_eq!(sim.canary_weight(), Some(0));
    assert!(sim.message().contains("analysis background failed"));
}

#[test]
fn a_completed_rollout_terminates_background_analysis_and_retry_starts_afresh() {
    let (mut sim, _) = analysed("[{setWeight: 20}, ANALYSIS]", "");
    sim.prometheus
        .insert("error-rate".into(), QueryValue::Vector(vec![0.5]));
    sim.set_image("backend:2");
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    // `retry`: clear abort; the analysis runs again, now on good numbers.
    sim.prometheus
        .insert("error-rate".into(), QueryValue::Vector(vec![0.01]));
    sim.status().abort = false;
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    let status = sim.rollout.status.clone().unwrap();
    assert_eq!(run(&status, "step-1").phase, AnalysisPhase::Successful);
    assert_eq!(run(&status, "step-1").metrics[0].failed, 0, "a fresh run");
}

#[test]
fn a_missing_or_invalid_template_degrades_with_its_name() {
    let (mut sim, _) = deployed(&format!("[{{setWeight: 20}}, {ANALYSIS}]"));
    sim.set_image("backend:2");
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    let message = sim.message();
    assert!(
        message.contains("InvalidAnalysis: spec.strategy.canary.steps[1].analysis.templates[0]: AnalysisTemplate \"error-rate\" not found"),
        "{message}"
    );
    assert_eq!(sim.canary_weight(), Some(0), "nothing moved");
    sim.world.templates.insert(
        "error-rate".into(),
        template("count: 3\n    failureCondition: result[0] >").spec,
    );
    sim.settle();
    let message = sim.message();
    assert!(
        message.contains("spec.metrics[0].interval: required when count is more than 1"),
        "{message}"
    );
    assert!(
        message.contains("spec.metrics[0].failureCondition: \"result[0] >\" does not parse"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------
// The ALB as AWS shows it.

fn aws(weights: Option<(i32, i32)>) -> Option<Result<Observed, String>> {
    let resource = |name: &str| rollout_core::types::AwsResource {
        name: name.into(),
        arn: format!("arn:aws:elasticloadbalancing:eu-west-1:123456789012:{name}"),
    };
    Some(Ok(Observed {
        load_balancer: Some(resource("loadbalancer/app/k8s-shop/1")),
        stable: Some(resource("targetgroup/k8s-stable/2")),
        canary: Some(resource("targetgroup/k8s-canary/3")),
        rule: Some("arn:rule".into()),
        weights,
        ..Default::default()
    }))
}

#[test]
fn a_step_counts_only_once_the_alb_shows_its_weights() {
    let (mut sim, stable) = deployed(STEPS);
    sim.world.alb = aws(Some((0, 100)));
    sim.settle();
    // The LB controller takes 30 s to register targets and apply weights.
    sim.lb.lag = SignedDuration::from_secs(30);
    sim.set_image("backend:2");
    let canary = sim.hash();
    sim.settle();
    assert_eq!(
        sim.canary_weight(),
        Some(0),
        "no weight before the canary's pods are healthy in its target group"
    );
    let status = sim.rollout.status.clone().unwrap();
    assert_eq!(
        status.traffic_gates[0].message,
        format!("0 of 1 pods of backend-{canary} healthy in backend-service-canary's target group")
    );
    assert_eq!(
        status.alb.unwrap().message,
        Some(status.traffic_gates[0].message.clone())
    );

    sim.advance(30);
    let d = sim.settle();
    assert_eq!(
        sim.canary_weight(),
        Some(20),
        "the Ingress carries the weights"
    );
    assert_eq!(sim.step_index(), 0, "but AWS does not show them yet");
    assert_eq!(sim.phase(), Some(Phase::Progressing));
    assert_eq!(d.requeue_after, Some(Duration::from_secs(10)));
    let status = sim.rollout.status.clone().unwrap();
    assert_eq!(
        status.canary.weights.as_ref().unwrap().verified,
        Some(false)
    );
    let alb = status.alb.unwrap();
    assert_eq!(
        alb.message.as_deref(),
        Some("waiting for the ALB to apply weights 20/80 (it shows 0/100)")
    );
    assert_eq!(
        alb.canary_target_group.unwrap().name,
        "targetgroup/k8s-canary/3"
    );

    // The LB controller catches up.
    sim.advance(30);
    sim.settle();
    assert_eq!(sim.step_index(), 1);
    assert_eq!(sim.phase(), Some(Phase::Paused));
    let status = sim.rollout.status.clone().unwrap();
    assert_eq!(status.canary.weights.unwrap().verified, Some(true));
    assert_eq!(status.alb.unwrap().message, None);
    assert!(status.traffic_gates.is_empty());

    // To the end: the old stable keeps its pods until they have left
    // both target groups.
    sim.promote();
    for _ in 0..20 {
        sim.settle();
        if sim.phase() == Some(Phase::Healthy) {
            break;
        }
        sim.advance(30);
        sim.promote();
    }
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(
        sim.replicas(&stable),
        5,
        "the old stable's pods may still be draining"
    );
    for _ in 0..10 {
        sim.advance(30);
        sim.settle();
    }
    assert_eq!(sim.replicas(&stable), 0);
    assert!(sim.rollout.status.clone().unwrap().traffic_gates.is_empty());
}

#[test]
fn an_unreadable_alb_holds_the_step_and_retries() {
    let (mut sim, _) = deployed(STEPS);
    sim.world.alb = Some(Err("ELBv2 DescribeRules: Throttling: Rate exceeded".into()));
    sim.set_image("backend:2");
    let d = sim.settle();
    assert_eq!(
        (sim.step_index(), sim.canary_weight()),
        (0, Some(0)),
        "no weight moves onto a target group whose health cannot be read"
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(5)));
    let status = sim.rollout.status.clone().unwrap();
    let message = status.alb.unwrap().message.unwrap();
    assert!(
        message
            .contains("cannot read target health: ELBv2 DescribeRules: Throttling: Rate exceeded"),
        "{message}"
    );
    assert_eq!(status.canary.weights.unwrap().verified, Some(false));
    sim.world.alb = aws(Some((0, 100)));
    sim.settle();
    assert_eq!(sim.step_index(), 1);
}

#[test]
fn direct_mode_sets_the_weights_through_aws() {
    let mut r = rollout(STEPS);
    let alb = alb_routing(&mut r);
    alb.ingress.clear();
    alb.direct = Some(serde_yaml::from_str(
        "{ruleArn: 'arn:aws:elasticloadbalancing:eu-west-1:1:listener-rule/app/x/1/2/3', stableTargetGroupArn: 'arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/stable/1', canaryTargetGroupArn: 'arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/canary/2'}",
    ).unwrap());
    let mut sim = Sim::new(r);
    sim.world.ingresses.clear();
    // The rule forwards to the stable group only until the controller sets weights.
    sim.world.alb = aws(None);
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(sim.canary_weight(), Some(0));
    sim.set_image("backend:2");
    sim.settle();
    assert_eq!((sim.step_index(), sim.canary_weight()), (1, Some(20)));
    assert_eq!(
        sim.rollout
            .status
            .clone()
            .unwrap()
            .canary
            .weights
            .unwrap()
            .verified,
        Some(true)
    );
    sim.promote();
    sim.settle();
    sim.advance(30);
    sim.settle();
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(sim.canary_weight(), Some(0));

    // Validation of the direct block.
    let mut bad = rollout(STEPS);
    let alb = alb_routing(&mut bad);
    alb.direct = Some(serde_yaml::from_str(
        "{listenerArn: 'arn:l', ruleArn: 'arn:r', stableTargetGroupArn: tg, canaryTargetGroupArn: tg}",
    ).unwrap());
    let errors = validate(&bad.spec).unwrap_err().join("\n");
    for want in [
        "trafficRouting.alb: ingress and direct are exclusive",
        "trafficRouting.alb.direct: give exactly one of listenerArn or ruleArn",
        "trafficRouting.alb.direct.stableTargetGroupArn: expected an ARN",
        "stableTargetGroupArn and canaryTargetGroupArn must differ",
    ] {
        assert!(errors.contains(want), "{want}: {errors}");
    }
}

#[test]
fn restart_replaces_old_pods_one_at_a_time_while_the_rest_are_available() {
    let (mut sim, stable) = deployed(STEPS);
    let before: Vec<String> = sim.world.pods.iter().map(|p| p.name.clone()).collect();
    assert_eq!(before.len(), 5);
    sim.advance(60);
    let at = sim.world.now;
    sim.rollout.spec.restart_at = Some(at.to_string());

    // The first reconcile evicts the oldest pod and nothing else.
    sim.kubelet = false;
    let d = sim.step();
    assert_eq!(
        d.actions,
        [Action::EvictPod {
            name: before[0].clone()
        }]
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(5)));
    // While its replacement is not available, no other pod goes.
    let d = sim.step();
    assert!(d.actions.is_empty(), "{:?}", d.actions);

    // The kubelet brings replacements up; one eviction per reconcile.
    sim.kubelet = true;
    let mut evicted = 1;
    for _ in 0..20 {
        sim.advance(5);
        let d = sim.step();
        evicted += d
            .actions
            .iter()
            .filter(|a| matches!(a, Action::EvictPod { .. }))
            .count();
        assert!(d.actions.len() <= 1);
    }
    assert_eq!(evicted, 5);
    let status = sim.rollout.status.clone().unwrap();
    assert_eq!(status.restarted_at, Some(at.to_string()));
    assert!(sim.world.pods.iter().all(|p| p.created >= at));
    assert_eq!(sim.replicas(&stable), 5);
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    // Done: nothing more to do, no more requeues.
    let d = sim.step();
    assert!(d.actions.is_empty() && d.requeue_after.is_none());
}

#[test]
fn a_restart_in_the_future_waits_and_a_bad_time_is_invalid() {
    let (mut sim, _) = deployed(STEPS);
    let at = sim.world.now + SignedDuration::from_secs(90);
    sim.rollout.spec.restart_at = Some(at.to_string());
    let d = sim.step();
    assert!(d.actions.is_empty());
    assert_eq!(d.requeue_after, Some(Duration::from_secs(90)));

    sim.rollout.spec.restart_at = Some("tomorrow".into());
    sim.step();
    assert!(
        sim.message()
            .contains("spec.restartAt: expected an RFC 3339 time")
    );
}
