//! Model-based tests of the canary decision. proptest drives the simulated
//! cluster with random sequences of what happens to a Rollout over several
//! releases: new templates (a new image, back to stable, back to an earlier
//! canary), a human's promote, promote --full, abort, retry, pause and
//! resume (the very patches `gantry rollout` sends, also landing between a
//! reconcile's read and its writes), controller restarts
//! (the status through JSON), time passing, pods that become available
//! late, and analysis results. After every reconcile a model that knows
//! only the events and the steps checks that:
//!
//! - a revision passes its steps in order (none when going back within the
//!   rollback window): a pause only after a human
//!   released it or its duration elapsed, an analysis only on a successful
//!   run (or a promote past an inconclusive one), a setWeight only once its
//!   weight is in force; progress restarts exactly when a new revision
//!   starts or a retry asks;
//! - with pingPong, the stable Service never leaves the stable revision
//!   (the roles swap instead);
//! - with dynamicStableScale, weight moves onto the stable only once it
//!   has the available pods for its share;
//! - every Ingress carries the same weights and header routes after each
//!   reconcile, and a setWeight or setHeaderRoute counts only once all of
//!   them carry it; a header route is added only while the canary Service
//!   selects the current revision, its pods available;
//! - no canary gets more traffic than its current step allows, traffic only
//!   grows towards ReplicaSets with the available pods for their share, an
//!   earlier canary never gains any, an abort sends it all back;
//! - the status is consistent (a Healthy rollout carries no pause or abort
//!   leftovers and no stale message) and the server holds what was decided;
//! - a basic canary keeps its pods within maxSurge and its available pods
//!   (what a Service selecting every revision reaches) above
//!   replicas - maxUnavailable, and each role's pods carry that role's
//!   metadata;
//! - each notification goes out once per revision, and every pause,
//!   abort and completion the status shows has been notified;
//! - a restarted controller decides exactly what it would have decided;
//! - and at the end every release can still complete.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rollout_core::alb::routes::{carried_conditions, routes_carried};
use rollout_core::decide::{
    INCONCLUSIVE_REASON, canary_replicas, decide, ingress_weights, weight_before,
};
use rollout_core::ops::Op;
use rollout_core::simulate::Simulation;
use rollout_core::types::{
    AnalysisPhase, AnalysisTemplate, GateKind, Phase, RollbackWindow, Rollout, RolloutAnalysis,
    RolloutStatus,
};
use rollout_core::validate::{Plan, StepKind, plan_of, validate};
use rollout_core::world::{Observed, ReplicaSetView};

#[path = "../common/mod.rs"]
mod common;

mod checks;
use checks::check_consistent;
mod events;

const PAUSE_REASON: &str = "CanaryPauseStep";

/// The step lists the releases walk (`ANALYSIS`: a step analysis).
const STEPS: [&str; 7] = [
    "[{setWeight: 25}, {pause: {duration: 3s}}, {setWeight: 50}, {pause: {}}]",
    "[{setCanaryScale: {replicas: 3}}, {setWeight: 20}, {pause: {}}, ANALYSIS, {setCanaryScale: {weight: 40}}, \
      {setWeight: 60}, {pause: {duration: 1m}}, {setCanaryScale: {matchTrafficWeight: true}}, {setWeight: 80}]",
    "[{setWeight: 10}, TESTERS, {pause: {duration: 10s}}, {setWeight: 40}, MOBILE, {setHeaderRoute: {name: testers}}, \
      {pause: {}}, {setWeight: 70}, {pause: {duration: 20s}}]",
    "[{setWeight: 40}, {pause: {duration: 10s}}, ANALYSIS, {setWeight: 80}, {pause: {}}]",
    "[{setWeight: 20}, {pause: {}}, {setWeight: 40}, {pause: {duration: 10s}}, ANALYSIS, {setWeight: 100}, {pause: {duration: 10s}}]",
    "[{setWeight: 30}, TESTERS, {pause: {duration: 5s}}, ANALYSIS, {setWeight: 60}, {pause: {}}]",
    "[{setWeight: 25}, {pause: {duration: 5s}}, {setWeight: 75}, {pause: {}}, {setWeight: 50}, ANALYSIS, {setWeight: 80}]",
];
/// Header routes (variants 2 and 5): testers' and mobile clients' requests
/// to the canary.
const TESTERS: &str = "{setHeaderRoute: {name: testers, match: [{headerName: X-Canary, headerValue: {exact: 'yes'}}]}}";
const MOBILE: &str = "{setHeaderRoute: {name: mobile, match: [{headerName: User-Agent, headerValue: {prefix: 'Mobile'}}, {headerName: X-Canary, headerValue: {exact: 'no'}}]}}";
const ROUTES: &str = "{spec: {strategy: {canary: {trafficRouting: {managedRoutes: [{name: testers}, {name: mobile}]}}}}}";
/// Variant 1: only the newest old ReplicaSet waits out the scale-down
/// delay; sticky target groups.
const REVISION_LIMIT: &str =
    "{spec: {strategy: {canary: {scaleDownDelaySeconds: 60, scaleDownDelayRevisionLimit: 1,
  trafficRouting: {alb: {stickinessConfig: {enabled: true, durationSeconds: 30}}}}}}}";
/// Variant 3: Argo's basic canary (no traffic routing, pods shared within
/// maxSurge/maxUnavailable), role metadata, and a progress deadline that
/// aborts.
const BASIC: &str = r#"{spec: {progressDeadlineSeconds: 120, progressDeadlineAbort: true,
  strategy: {canary: {trafficRouting: null, maxSurge: 1, maxUnavailable: 0,
    canaryMetadata: {labels: {role: canary}}, stableMetadata: {labels: {role: stable}}}}}}"#;
/// Variant 5: pingPong, the Services taking the roles in turn.
const PING_PONG: &str = r#"{spec: {strategy: {canary: {canaryService: "", stableService: "",
  pingPong: {pingService: backend-service-canary, pongService: backend-service},
  trafficRouting: {alb: {rootService: backend-root}}}}}}"#;
/// Variant 4: a basic canary that names no Service (Argo's getting-started
/// shape: a Service of the user's selects every revision's pods), with
/// Argo's default maxSurge and maxUnavailable (25%).
const NO_SERVICES: &str = r#"{spec: {strategy: {canary: {trafficRouting: null,
  canaryService: "", stableService: ""}}}}"#;
/// Variant 6: dynamicStableScale, the stable shrinking to its share.
const DYNAMIC: &str = "{spec: {strategy: {canary: {dynamicStableScale: true}}}}";
const ANALYSIS: &str = "{analysis: {templates: [{templateName: error-rate}]}}";

#[derive(Debug, Clone)]
enum Event {
    Reconcile,
    Advance(i64),
    Release,
    BackToStable,
    /// Back to the n-th latest earlier revision that is neither current nor
    /// stable (a canary cut short, or a former stable: a rollback).
    EarlierRevision(usize),
    Human(Op),
    /// A human's op landing between the controller's read and its writes.
    Racing(Op),
    ControllerRestart,
    Kubelet(bool),
    Verdict(AnalysisPhase),
}

fn event() -> impl Strategy<Value = Event> {
    use AnalysisPhase::*;
    prop_oneof![
        12 => Just(Event::Reconcile),
        4 => (1i64..90).prop_map(Event::Advance),
        2 => Just(Event::Release),
        1 => Just(Event::BackToStable),
        1 => (0usize..4).prop_map(Event::EarlierRevision),
        3 => Just(Event::Human(Op::Promote { full: false })),
        1 => Just(Event::Human(Op::Promote { full: true })),
        1 => Just(Event::Human(Op::Abort)),
        1 => Just(Event::Human(Op::Retry)),
        1 => Just(Event::Human(Op::Pause)),
        1 => Just(Event::Human(Op::Resume)),
        2 => prop_oneof![
            3 => Just(Op::Promote { full: false }),
            1 => Just(Op::Abort),
            1 => Just(Op::Retry),
            1 => Just(Op::Pause),
        ]
        .prop_map(Event::Racing),
        1 => Just(Event::ControllerRestart),
        1 => any::<bool>().prop_map(Event::Kubelet),
        1 => prop_oneof![5 => Just(Successful), 1 => Just(Failed), 1 => Just(Inconclusive)]
            .prop_map(Event::Verdict),
    ]
}

/// How the simulated AWS Load Balancer Controller and ALB behave, and what
/// the controller sees of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Alb {
    /// The LB controller's lag (seconds); a drain takes 10 s.
    lag: i64,
    /// How long until a new target passes its health checks (seconds).
    health: i64,
    /// The controller reads target health through the ELBv2 API; else it
    /// sees only EndpointSlices and waits settle and drain times.
    aws: bool,
    /// New pods get the LB controller's readiness gates for the target
    /// groups of the Services selecting them.
    gates: bool,
}

const HEALTH_CHECK: i64 = 5;
const DEREGISTRATION: i64 = 10;

fn alb() -> impl Strategy<Value = Alb> {
    let lag = prop_oneof![Just(0i64), Just(2), Just(10)];
    (lag, any::<bool>(), any::<bool>()).prop_map(|(lag, aws, gates)| Alb {
        lag,
        health: HEALTH_CHECK,
        aws,
        gates,
    })
}

/// The Rollout of variant `v` (a background analysis and two Ingresses in
/// variant 2; header routes in 2 and 5; a rollback window of 2 in all),
/// deployed once on `backend:1` behind an ALB with `alb`'s timing.
fn deployed(v: usize, alb: Alb) -> Simulation {
    let steps = STEPS[v]
        .replace("ANALYSIS", ANALYSIS)
        .replace("TESTERS", TESTERS)
        .replace("MOBILE", MOBILE);
    let mut rollout: Rollout = common::rollout(&steps);
    // Without target health, the controller waits what the ALB takes.
    let timing = format!(
        "{{spec: {{strategy: {{canary: {{trafficRouting: {{alb: {{targetHealth: {{settleSeconds: {}, drainSeconds: {DEREGISTRATION}}}}}}}}}}}}}}}",
        alb.lag + alb.health
    );
    let mut doc = serde_json::to_value(&rollout).unwrap();
    json_patch::merge(&mut doc, &serde_yaml::from_str(&timing).unwrap());
    rollout = serde_json::from_value(doc).unwrap();
    if v == 2 {
        let background: RolloutAnalysis =
            serde_yaml::from_str("{templates: [{templateName: error-rate}], startingStep: 3}")
                .unwrap();
        rollout.spec.strategy.canary.as_mut().unwrap().analysis = Some(background);
        // Two Ingresses (say an internal and a public ALB).
        let alb = common::alb_routing(&mut rollout);
        alb.ingress.clear();
        alb.ingresses = Some(vec!["shop".into(), "shop-internal".into()]);
    }
    let variant = match v {
        1 => Some(REVISION_LIMIT),
        3 => Some(BASIC),
        4 => Some(NO_SERVICES),
        5 => Some(PING_PONG),
        6 => Some(DYNAMIC),
        _ => None,
    };
    if matches!(v, 2 | 5) {
        let mut doc = serde_json::to_value(&rollout).unwrap();
        json_patch::merge(&mut doc, &serde_yaml::from_str(ROUTES).unwrap());
        rollout = serde_json::from_value(doc).unwrap();
    }
    if let Some(patch) = variant {
        let mut doc = serde_json::to_value(&rollout).unwrap();
        json_patch::merge(&mut doc, &serde_yaml::from_str(patch).unwrap());
        rollout = serde_json::from_value(doc).unwrap();
    }
    // Back to the revision stable before this one: no steps.
    rollout.spec.rollback_window = Some(RollbackWindow { revisions: 2 });
    let mut sim = Simulation::new(rollout);
    sim.lb.lag = SignedDuration::from_secs(alb.lag);
    sim.lb.health_check = SignedDuration::from_secs(alb.health);
    sim.lb.deregistration = SignedDuration::from_secs(DEREGISTRATION);
    if alb.aws {
        sim.world.alb = Some(Ok(Observed::placeholder()));
    }
    sim.readiness_gates = alb.gates;
    let template: AnalysisTemplate = serde_yaml::from_str(
        r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate, namespace: shop}
spec:
  metrics:
  - name: error-rate
    interval: 20s
    count: 2
    successCondition: result[0] < 0.05
    provider: {prometheus: {address: "http://prometheus:9090", query: "sum(errors)"}}
"#,
    )
    .unwrap();
    sim.world
        .templates
        .insert("error-rate".into(), template.spec);
    sim.verdict = Some(AnalysisPhase::Successful);
    sim.notifications = Some(Vec::new());
    for _ in 0..10 {
        sim.settle().expect("the first deploy settles");
        sim.advance(SignedDuration::from_secs(alb.lag + alb.health));
    }
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{:#?}", sim.status());
    // Until the first version's targets were healthy nothing was served,
    // so nothing could be lost.
    sim.violations.clear();
    sim.notifications = Some(Vec::new());
    sim
}

/// What the model knows: the events, the steps, and what it saw.
struct Model {
    sim: Simulation,
    plan: Plan,
    /// Image by pod template hash, and every revision released (the first
    /// deploy's included), in order.
    images: BTreeMap<String, String>,
    revisions: Vec<String>,
    releases: usize,
    /// A retry was asked: progress may start afresh at the next reconcile
    /// (as it does when the template's hash is not the status's
    /// currentPodHash).
    retry: bool,
    /// When the status first showed each step of the current progress.
    reached: BTreeMap<i32, Timestamp>,
    /// (step, hold reason) a human promoted past.
    released: BTreeSet<(i32, String)>,
    full: bool,
    /// Notification ids sent for the current revision.
    notified: BTreeSet<String>,
}

impl Model {
    fn new(variant: usize, alb: Alb) -> Model {
        let sim = deployed(variant, alb);
        let plan = validate(&sim.rollout.spec).unwrap();
        let hash = sim.hash();
        Model {
            plan,
            images: BTreeMap::from([(hash.clone(), "backend:1".to_string())]),
            revisions: vec![hash.clone()],
            releases: 1,
            retry: false,
            reached: BTreeMap::new(),
            released: BTreeSet::new(),
            full: false,
            notified: sim
                .status()
                .and_then(|s| s.notified.clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
            sim,
        }
    }

    fn status(&self) -> RolloutStatus {
        self.sim.status().cloned().unwrap_or_default()
    }

    /// `times` reconciles, failing at the first broken invariant.
    fn reconciles(&mut self, times: usize) {
        for _ in 0..times {
            self.apply(&Event::Reconcile).unwrap();
        }
    }

    /// One reconcile, with `racing` landing between its read and its writes.
    fn reconcile(&mut self, racing: Option<Op>) -> Result<(), String> {
        let before = self.status();
        let spec_paused = self.sim.rollout.spec.paused;
        let seen = self.sim.world.clone();
        let weight_seen = self.sim.canary_weight().unwrap_or(0);
        let mut accepted = false;
        let decided = self.sim.step_racing(|sim| {
            if let Some(op) = racing {
                accepted = sim.operate(op).is_ok();
            }
        });
        if let Some(v) = self.sim.violations.first() {
            return Err(v.clone());
        }
        // Judged: what the controller decided from what it read. Without a
        // race the simulation checks that the server holds exactly that;
        // with one, what raced in is the next reconcile's input.
        let status = decided.status;
        let hash = self.sim.hash();
        if status.current_pod_hash.as_deref() != Some(hash.as_str()) {
            return Err(format!(
                "the status follows {:?}, not {hash}",
                status.current_pod_hash
            ));
        }
        self.check_steps(&before, &status, &seen, weight_seen)?;
        self.check_traffic(&status, &seen, weight_seen)?;
        self.check_pods(&status, &seen)?;
        check_consistent(&status, self.plan.steps.len() as i32, spec_paused)?;
        self.check_notifications(&before, &status)?;
        // The decision was made without the racing op; it counts from now.
        if let Some(op) = racing.filter(|_| accepted) {
            self.note(op, &before);
        }
        Ok(())
    }

    /// Nothing held, aborted or skipped remains, and the rollout completes.
    fn finish(&mut self) -> Result<(), String> {
        self.sim.kubelet = true;
        self.sim.verdict = Some(AnalysisPhase::Successful);
        self.human(Op::Resume);
        for _ in 0..400 {
            let status = self.status();
            if status.abort {
                self.human(Op::Retry);
            }
            self.reconcile(None)?;
            let status = self.status();
            if status.phase == Some(Phase::Healthy)
                && status.stable_rs.as_deref() == Some(self.sim.hash().as_str())
            {
                return Ok(());
            }
            self.sim.advance(SignedDuration::from_secs(15));
            if !status.pause_conditions.is_empty() {
                self.human(Op::Promote { full: false });
            }
        }
        Err(format!(
            "the last release never completed: {:#?}",
            self.status()
        ))
    }
}

// 256 cases by default; PROPTEST_CASES=20000 for a deeper search.
proptest! {
    #[test]
    fn every_release_passes_every_gate(
        variant in 0usize..STEPS.len(),
        alb in alb(),
        events in prop::collection::vec(event(), 1..120),
    ) {
        let mut model = Model::new(variant, alb);
        for (i, e) in events.iter().enumerate() {
            model
                .apply(e)
                .map_err(|why| TestCaseError::fail(format!("after event {i} ({e:?}): {why}")))?;
        }
        model.finish().map_err(TestCaseError::fail)?;
    }
}

/// The issue's reproduction, fixed as a scenario: the second and third
/// releases each stop at every pause.
#[test]
fn the_releases_after_a_promoted_one_stop_at_every_pause() {
    // An ALB that acts at once: the pauses alone set the pace.
    let instant = Alb {
        lag: 0,
        health: 0,
        aws: false,
        gates: false,
    };
    let mut model = Model::new(0, instant);
    for release in 2..=4 {
        model.apply(&Event::Release).unwrap();
        // 25%, then the 3 s pause holds however often the controller looks.
        model.reconciles(5);
        let status = model.status();
        assert_eq!(
            status.current_step_index,
            Some(1),
            "release {release}: {status:#?}"
        );
        assert_eq!(status.phase, Some(Phase::Paused));
        model.apply(&Event::Advance(1)).unwrap();
        model.reconciles(1);
        assert_eq!(model.status().current_step_index, Some(1));
        model.apply(&Event::Advance(3)).unwrap();
        model.reconciles(5);
        // 50%, then the untimed pause holds until promoted.
        let status = model.status();
        assert_eq!(
            status.current_step_index,
            Some(3),
            "release {release}: {status:#?}"
        );
        assert!(status.controller_pause);
        model.apply(&Event::Advance(3600)).unwrap();
        model.reconciles(1);
        assert_eq!(model.status().current_step_index, Some(3));
        model
            .apply(&Event::Human(Op::Promote { full: false }))
            .unwrap();
        model.reconciles(10);
        let status = model.status();
        assert_eq!(
            status.phase,
            Some(Phase::Healthy),
            "release {release}: {status:#?}"
        );
        assert!(!status.holds_progress() && status.message.is_none());
    }
}
