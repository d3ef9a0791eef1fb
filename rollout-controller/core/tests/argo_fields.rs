//! The Argo Rollouts fields canary users rely on, through the pure
//! decision on the simulated cluster: the progress deadline, role
//! metadata, a basic canary's maxSurge/maxUnavailable (with or without
//! Services), workloadRef with each scaleDown, and dry-run metrics.

use k8s_openapi::jiff::SignedDuration;
use rollout_core::analysis::QueryValue;
use rollout_core::decide::{Action, DEADLINE_REASON};
use rollout_core::simulate::Simulation;
use rollout_core::types::{AnalysisPhase, AnalysisTemplate, Phase, PodMetadata, Rollout};
use rollout_core::validate::validate;
use rollout_core::world::WorkloadView;

mod common;

/// `backend` with `extra` merged into its spec (YAML), deployed and settled.
fn deployed(steps: &str, extra: &str) -> Simulation {
    let mut sim = Simulation::new(with(common::rollout(steps), extra));
    settle(&mut sim);
    sim
}

fn with(rollout: Rollout, extra: &str) -> Rollout {
    let mut doc = serde_json::to_value(&rollout).unwrap();
    let patch: serde_json::Value = serde_yaml::from_str(extra).unwrap();
    json_patch::merge(&mut doc, &patch);
    serde_json::from_value(doc).unwrap()
}

/// Reconciles until nothing changes; the first reconcile lets pods a test
/// just let run be seen (the simulated kubelet acts after a reconcile).
fn settle(sim: &mut Simulation) {
    sim.step();
    sim.settle()
        .unwrap_or_else(|| panic!("did not settle: {:#?}", sim.rollout.status));
    safe(sim);
}

fn step(sim: &mut Simulation) -> Vec<Action> {
    let d = sim.step();
    safe(sim);
    d.actions
}

fn safe(sim: &Simulation) {
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

fn release(sim: &mut Simulation, image: &str) {
    let template = match sim.world.workload.as_mut() {
        Some(d) => &mut d.template,
        None => &mut sim.rollout.spec.template,
    };
    template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
    *sim.rollout.metadata.generation.get_or_insert(0) += 1;
}

fn message(sim: &Simulation) -> String {
    sim.status()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

fn errors(rollout: Rollout) -> String {
    validate(&rollout.spec).unwrap_err().join("\n")
}

/// `extra` merged into `backend`'s spec is invalid, saying `why`.
fn rejected(extra: &str, why: &str) {
    let e = errors(with(common::rollout(STEPS), extra));
    assert!(e.contains(why), "{e}");
}

// ---------------------------------------------------------------------------
// progressDeadlineSeconds / progressDeadlineAbort

const STEPS: &str = "[{setWeight: 20}, {pause: {}}, {setWeight: 60}]";

#[test]
fn a_canary_whose_pods_never_become_available_is_degraded_after_the_deadline() {
    let mut sim = deployed(STEPS, "{spec: {progressDeadlineSeconds: 60}}");
    sim.kubelet = false;
    release(&mut sim, "backend:2");
    // Creating the canary ReplicaSet, then seeing it, are progress.
    step(&mut sim);
    let d = sim.step();
    assert_eq!(d.requeue_after, Some(std::time::Duration::from_secs(60)));
    sim.advance(SignedDuration::from_secs(59));
    step(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Progressing));
    sim.advance(SignedDuration::from_secs(2));
    step(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Degraded), "{}", message(&sim));
    assert!(
        message(&sim).contains("no progress for 60s"),
        "{}",
        message(&sim)
    );
    let status = sim.status().unwrap().clone();
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some(DEADLINE_REASON))
    );
    assert!(!status.abort, "progressDeadlineAbort defaults to false");
    assert_eq!(
        sim.canary_weight(),
        Some(0),
        "nothing moved to the stuck canary"
    );
    // Stable output while stuck: no writes.
    let writes = sim.writes;
    step(&mut sim);
    assert_eq!(sim.writes, writes);
    // Pods arrive late: progress clears it.
    sim.kubelet = true;
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Paused), "{}", message(&sim));
    assert_eq!(sim.canary_weight(), Some(20));
}

#[test]
fn time_paused_does_not_count_against_the_deadline() {
    let mut sim = deployed(STEPS, "{spec: {progressDeadlineSeconds: 60}}");
    release(&mut sim, "backend:2");
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Paused));
    sim.advance(SignedDuration::from_secs(3600));
    step(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Paused));
    sim.kubelet = false;
    sim.promote();
    step(&mut sim);
    step(&mut sim);
    sim.advance(SignedDuration::from_secs(30));
    step(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Progressing), "{}", message(&sim));
    sim.advance(SignedDuration::from_secs(31));
    step(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Degraded));
}

#[test]
fn progress_deadline_abort_sends_everything_back_to_stable() {
    let extra = "{spec: {progressDeadlineSeconds: 60, progressDeadlineAbort: true}}";
    let mut sim = deployed(
        "[{setWeight: 20}, {pause: {}}, {setWeight: 60}, {pause: {}}]",
        extra,
    );
    let stable = sim.hash();
    release(&mut sim, "backend:2");
    settle(&mut sim);
    sim.kubelet = false;
    sim.promote();
    step(&mut sim);
    step(&mut sim);
    sim.advance(SignedDuration::from_secs(61));
    let d = sim.step();
    assert!(
        d.events.iter().any(|(reason, _)| reason == DEADLINE_REASON),
        "{:?}",
        d.events
    );
    assert!(sim.status().unwrap().abort);
    sim.kubelet = true;
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    assert_eq!(sim.canary_weight(), Some(0));
    assert!(
        message(&sim).starts_with("aborted (no progress for 60s"),
        "{}",
        message(&sim)
    );
    assert_eq!(
        sim.status().unwrap().stable_rs.as_deref(),
        Some(stable.as_str())
    );
}

#[test]
fn the_first_deploy_is_degraded_but_not_aborted() {
    let extra = "{spec: {progressDeadlineSeconds: 30, progressDeadlineAbort: true}}";
    let mut sim = Simulation::new(with(common::rollout(STEPS), extra));
    sim.kubelet = false;
    step(&mut sim);
    step(&mut sim);
    sim.advance(SignedDuration::from_secs(31));
    step(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    assert!(!sim.status().unwrap().abort, "no canary to abort");
}

// ---------------------------------------------------------------------------
// canaryMetadata / stableMetadata

const ROLES: &str = r#"{spec: {strategy: {canary: {
  canaryMetadata: {labels: {role: canary}, annotations: {dash: "canary"}},
  stableMetadata: {labels: {role: stable}}}}}}"#;

fn role(label: &str) -> PodMetadata {
    let mut m = PodMetadata::default();
    m.labels.insert("role".into(), label.into());
    if label == "canary" {
        m.annotations.insert("dash".into(), "canary".into());
    }
    m
}

fn metadata_of(sim: &Simulation, hash: &str) -> PodMetadata {
    let rs = sim
        .world
        .replica_sets
        .iter()
        .find(|r| r.hash == hash)
        .unwrap();
    rs.pod_metadata.clone()
}

#[test]
fn role_metadata_follows_the_canary_and_moves_when_it_becomes_stable() {
    let mut sim = deployed("[{setWeight: 20}, {pause: {}}]", ROLES);
    let first = sim.hash();
    assert_eq!(metadata_of(&sim, &first), role("stable"));
    release(&mut sim, "backend:2");
    let actions = step(&mut sim);
    let canary = sim.hash();
    assert!(
        actions.iter().any(|a| matches!(a, Action::CreateReplicaSet { pod_metadata, .. } if *pod_metadata == role("canary"))),
        "the canary is created with its role's metadata: {actions:?}"
    );
    settle(&mut sim);
    assert_eq!(metadata_of(&sim, &canary), role("canary"));
    assert_eq!(metadata_of(&sim, &first), role("stable"));
    sim.promote();
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(
        metadata_of(&sim, &canary),
        role("stable"),
        "promoted: stable metadata"
    );
    assert_eq!(
        metadata_of(&sim, &first),
        role("stable"),
        "old revisions are left alone"
    );
}

#[test]
fn changing_role_metadata_moves_it_without_a_new_revision() {
    let mut sim = deployed("[{setWeight: 20}]", ROLES);
    let hash = sim.hash();
    sim.rollout
        .spec
        .strategy
        .canary
        .as_mut()
        .unwrap()
        .stable_metadata = Some(role("primary"));
    let actions = step(&mut sim);
    assert_eq!(sim.hash(), hash);
    assert!(
        actions.iter().any(|a| matches!(a, Action::SetPodMetadata { from, to, .. } if *from == role("stable") && *to == role("primary"))),
        "{actions:?}"
    );
}

#[test]
fn role_labels_may_not_touch_the_selector() {
    let extra = "{spec: {strategy: {canary: {canaryMetadata: {labels: {app: canary}}}}}}";
    rejected(
        extra,
        "spec.strategy.canary.canaryMetadata.labels.app: a selector label",
    );
}

// ---------------------------------------------------------------------------
// maxSurge / maxUnavailable: a canary without traffic routing

fn basic(surge: &str, unavailable: &str, steps: &str) -> Simulation {
    let extra = format!(
        "{{spec: {{replicas: 4, strategy: {{canary: {{trafficRouting: null, maxSurge: {surge}, maxUnavailable: {unavailable}}}}}}}}}"
    );
    deployed(steps, &extra)
}

/// Runs to a settled state, checking the bounds after every reconcile.
fn settle_within(sim: &mut Simulation, surge: i32, unavailable: i32) {
    for _ in 0..100 {
        let before = sim.rollout.status.clone();
        let actions = step(sim);
        let total: i32 = sim.world.replica_sets.iter().map(|r| r.replicas).sum();
        let available: i32 = sim.world.replica_sets.iter().map(|r| r.available).sum();
        assert!(
            total <= 4 + surge.max(1),
            "{total} pods: {:#?}",
            sim.world.replica_sets
        );
        assert!(
            available >= 4 - unavailable,
            "{available} available: {:#?}",
            sim.world.replica_sets
        );
        if actions.is_empty() && sim.rollout.status == before {
            return;
        }
    }
    panic!("did not settle: {:#?}", sim.rollout.status);
}

#[test]
fn a_basic_canary_moves_pods_within_max_surge_and_max_unavailable() {
    for (surge, unavailable, s, u) in [("1", "0", 1, 0), ("0", "1", 0, 1), ("'50%'", "'25%'", 2, 1)]
    {
        let mut sim = basic(surge, unavailable, "[{setWeight: 50}, {pause: {}}]");
        let stable = sim.hash();
        release(&mut sim, "backend:2");
        let canary = sim.hash();
        settle_within(&mut sim, s, u);
        assert_eq!(
            sim.phase(),
            Some(Phase::Paused),
            "{surge}/{unavailable}: {}",
            message(&sim)
        );
        assert_eq!(
            (sim.replicas(&canary), sim.replicas(&stable)),
            (2, 2),
            "the weight is a share of the pods"
        );
        sim.promote();
        settle_within(&mut sim, s, u);
        sim.advance(SignedDuration::from_secs(60));
        settle_within(&mut sim, s, u);
        assert_eq!(sim.phase(), Some(Phase::Healthy), "{surge}/{unavailable}");
        assert_eq!((sim.replicas(&canary), sim.replicas(&stable)), (4, 0));
    }
}

#[test]
fn max_surge_and_max_unavailable_cannot_both_be_zero() {
    let extra = "{spec: {strategy: {canary: {maxSurge: 0, maxUnavailable: '0%'}}}}";
    rejected(extra, "maxSurge and maxUnavailable cannot both be 0");
    let extra = "{spec: {strategy: {canary: {maxSurge: 'lots'}}}}";
    rejected(
        extra,
        "spec.strategy.canary.maxSurge: expected a number of pods or a percentage",
    );
}

#[test]
fn a_canary_replaced_mid_rollout_keeps_its_pods_until_the_capacity_is_back() {
    // maxUnavailable 0: the first canary's two available pods may go only
    // once the stable and the new canary have all four available again
    // (they are kept beyond maxSurge meanwhile). With Services, the canary
    // Service keeps them until the new canary serves; without, a Service
    // of the user's selects them all along.
    let extra = r#"{spec: {replicas: 4, strategy: {canary: {trafficRouting: null,
        canaryService: "", stableService: "", maxSurge: 1, maxUnavailable: 0}}}}"#;
    let mut sim = deployed("[{setWeight: 50}, {pause: {}}]", extra);
    release(&mut sim, "backend:2");
    settle_within(&mut sim, 1, 0);
    let first = sim.hash();
    assert_eq!(sim.replicas(&first), 2);
    let run = |sim: &mut Simulation| {
        for _ in 0..30 {
            step(sim);
            let available: i32 = sim.world.replica_sets.iter().map(|r| r.available).sum();
            assert!(available >= 4, "{:#?}", sim.world.replica_sets);
            sim.advance(SignedDuration::from_secs(10));
        }
    };
    sim.kubelet = false;
    release(&mut sim, "backend:3");
    run(&mut sim);
    assert_eq!(sim.replicas(&first), 2, "{:#?}", sim.world.replica_sets);
    sim.kubelet = true;
    run(&mut sim);
    assert_eq!(sim.replicas(&first), 0, "{:#?}", sim.world.replica_sets);
    assert_eq!(sim.replicas(&sim.hash()), 2);
}

#[test]
fn a_lower_weight_shrinks_the_canary_only_once_the_stable_grew_back() {
    let mut sim = basic(
        "1",
        "0",
        "[{setWeight: 50}, {pause: {}}, {setWeight: 25}, {pause: {}}]",
    );
    let stable = sim.hash();
    release(&mut sim, "backend:2");
    settle_within(&mut sim, 1, 0);
    let canary = sim.hash();
    sim.kubelet = false;
    sim.promote();
    settle_within(&mut sim, 1, 0);
    assert_eq!(
        sim.replicas(&canary),
        2,
        "held while the stable's pod is not available"
    );
    sim.kubelet = true;
    step(&mut sim);
    settle_within(&mut sim, 1, 0);
    assert_eq!((sim.replicas(&canary), sim.replicas(&stable)), (1, 3));
}

// ---------------------------------------------------------------------------
// A basic canary that names no Service (Argo's getting-started Rollout)

/// `backend` without traffic routing and without canary or stable Service:
/// a Service of the user's selects every revision's pods.
fn serviceless(steps: &str) -> Simulation {
    deployed(
        steps,
        r#"{spec: {strategy: {canary: {trafficRouting: null, canaryService: "", stableService: ""}}}}"#,
    )
}

#[test]
fn a_canary_without_services_moves_pods_only_and_completes() {
    let steps = "[{setWeight: 20}, {pause: {}}, {setWeight: 40}, {pause: {duration: 10}}, \
                 {setWeight: 60}, {pause: {duration: 10}}, {setWeight: 80}, {pause: {duration: 10}}]";
    let mut sim = serviceless(steps);
    let stable = sim.hash();
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    release(&mut sim, "backend:2");
    let canary = sim.hash();
    let mut seen = Vec::new();
    let healthy = sim.run_to_healthy(200, |sim, d| {
        safe(sim);
        assert!(
            !d.actions
                .iter()
                .any(|a| matches!(a, Action::SetServiceSelector { .. })),
            "no Service is named, none is touched: {:?}",
            d.actions
        );
        let pods = (sim.replicas(&canary), sim.replicas(&stable));
        if seen.last() != Some(&pods) {
            seen.push(pods);
        }
    });
    assert!(healthy, "{}", message(&sim));
    assert_eq!(sim.status().unwrap().stable_rs.as_deref(), Some(&*canary));
    // 20/40/60/80% of 5 pods, within 25% surge (2) and unavailable (1);
    // nothing keeps the old stable at 100%.
    for want in [(1, 4), (2, 3), (3, 2), (4, 1), (5, 0)] {
        assert!(seen.contains(&want), "{want:?} never held: {seen:?}");
    }
    assert!(sim.status().unwrap().canary.weights.is_none());
}

#[test]
fn services_are_optional_only_without_traffic_routing() {
    // One Service of the two is fine for a basic canary: it follows its role.
    let mut sim = deployed(
        "[{setWeight: 40}, {pause: {}}]",
        r#"{spec: {strategy: {canary: {trafficRouting: null, canaryService: ""}}}}"#,
    );
    release(&mut sim, "backend:2");
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Paused));
    assert!(sim.world.canary_service.is_none());
    let stable_service = sim.world.stable_service.as_ref().unwrap();
    assert_eq!(
        stable_service.hash.as_deref(),
        sim.status().unwrap().stable_rs.as_deref()
    );

    let e = errors(with(
        common::rollout(STEPS),
        r#"{spec: {strategy: {canary: {canaryService: "", stableService: ""}}}}"#,
    ));
    for field in ["canaryService", "stableService"] {
        assert!(
            e.contains(&format!(
                "spec.strategy.canary.{field}: required with trafficRouting"
            )),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------------------
// scaleDownDelayRevisionLimit

/// Releases `backend:2` and `backend:3`, each to completion, with a long
/// scale-down delay; the three hashes.
fn three_releases(limit: &str) -> (Simulation, [String; 3]) {
    let extra = format!(
        "{{spec: {{strategy: {{canary: {{scaleDownDelaySeconds: 600, scaleDownDelayRevisionLimit: {limit}}}}}}}}}"
    );
    let mut sim = deployed("[{setWeight: 50}]", &extra);
    let first = sim.hash();
    release(&mut sim, "backend:2");
    settle(&mut sim);
    let second = sim.hash();
    release(&mut sim, "backend:3");
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));
    let third = sim.hash();
    (sim, [first, second, third])
}

#[test]
fn only_the_newest_old_replica_sets_wait_out_the_scale_down_delay() {
    let (mut sim, [first, second, third]) = three_releases("1");
    assert_eq!(
        (
            sim.replicas(&first),
            sim.replicas(&second),
            sim.replicas(&third)
        ),
        (0, 5, 5),
        "one old ReplicaSet waits, the older one went once drained"
    );
    sim.advance(SignedDuration::from_secs(600));
    settle(&mut sim);
    assert_eq!(sim.replicas(&second), 0);

    let (sim, [first, second, _]) = three_releases("0");
    assert_eq!((sim.replicas(&first), sim.replicas(&second)), (0, 0));

    // Without a limit, every old one waits its delay.
    let (sim, [first, second, _]) = three_releases("null");
    assert_eq!((sim.replicas(&first), sim.replicas(&second)), (5, 5));

    let extra = "{spec: {strategy: {canary: {scaleDownDelayRevisionLimit: -1}}}}";
    rejected(
        extra,
        "spec.strategy.canary.scaleDownDelayRevisionLimit: must be 0 or more ReplicaSets, got -1",
    );
}

// ---------------------------------------------------------------------------
// rollbackWindow

#[test]
fn going_back_within_the_rollback_window_skips_the_steps() {
    let extra = "{spec: {rollbackWindow: {revisions: 3}}}";
    let mut sim = deployed("[{setWeight: 50}, {pause: {}}]", extra);
    // Revisions 1 (deployed) to 4, each promoted past its pause.
    let mut hashes = vec![sim.hash()];
    for image in ["backend:2", "backend:3", "backend:4"] {
        release(&mut sim, image);
        settle(&mut sim);
        assert_eq!(sim.phase(), Some(Phase::Paused), "{image}");
        sim.promote();
        settle(&mut sim);
        assert_eq!(sim.phase(), Some(Phase::Healthy), "{image}");
        hashes.push(sim.hash());
        sim.advance(SignedDuration::from_secs(60));
        settle(&mut sim);
    }
    let stable = |sim: &Simulation| sim.status().unwrap().stable_rs.clone().unwrap();
    // From 4 back to 2: revisions 3 and 4 are after it, fewer than 3.
    release(&mut sim, "backend:2");
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));
    assert_eq!(stable(&sim), hashes[1], "no pause held it");
    // Forward again to 4 is not a rollback: every step.
    release(&mut sim, "backend:4");
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Paused));
    sim.promote();
    settle(&mut sim);
    assert_eq!(stable(&sim), hashes[3]);
    // From 4 back to 1: revisions 2, 3 and 4 are after it: outside.
    release(&mut sim, "backend:1");
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Paused), "{}", message(&sim));

    rejected(
        "{spec: {rollbackWindow: {revisions: -2}}}",
        "spec.rollbackWindow.revisions: must be 0 or more, got -2",
    );
}

// ---------------------------------------------------------------------------
// setCanaryScale

#[test]
fn set_canary_scale_decouples_the_canarys_pods_from_its_weight() {
    let steps = "[{setCanaryScale: {replicas: 2}}, {pause: {}}, {setWeight: 20}, {pause: {}}, \
                 {setCanaryScale: {weight: 60}}, {pause: {}}, {setCanaryScale: {replicas: 1}}, {pause: {}}, \
                 {setCanaryScale: {matchTrafficWeight: true}}, {setWeight: 80}, {pause: {}}]";
    let mut sim = deployed(steps, "{}");
    let stable = sim.hash();
    release(&mut sim, "backend:2");
    let canary = sim.hash();
    // (canary pods, canary weight) at each pause; the stable keeps its 5.
    let mut held = Vec::new();
    for _ in 0..5 {
        settle(&mut sim);
        assert_eq!(sim.phase(), Some(Phase::Paused), "{}", message(&sim));
        assert_eq!(sim.replicas(&stable), 5);
        held.push((sim.replicas(&canary), sim.canary_weight().unwrap_or(0)));
        sim.promote();
    }
    // 2 pods before any weight; 60% of 5 = 3 pods at 20%; a lower scale
    // keeps the running canary's pods; then the weight's share.
    assert_eq!(held, [(2, 0), (2, 20), (3, 20), (3, 20), (4, 80)]);
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));
    assert_eq!(sim.replicas(&canary), 5);
}

#[test]
fn set_canary_scale_is_checked_against_the_weights() {
    let basic = "{spec: {strategy: {canary: {trafficRouting: null, steps: [{setCanaryScale: {replicas: 1}}]}}}}";
    rejected(
        basic,
        "spec.strategy.canary.steps[0]: setCanaryScale needs trafficRouting",
    );
    let starved =
        "{spec: {strategy: {canary: {steps: [{setWeight: 10}, {setCanaryScale: {replicas: 0}}]}}}}";
    rejected(
        starved,
        "spec.strategy.canary.steps[1]: the canary carries 10% of the traffic while setCanaryScale gives it no pods",
    );
    let both =
        "{spec: {strategy: {canary: {steps: [{setCanaryScale: {replicas: 1, weight: 5}}]}}}}";
    rejected(
        both,
        "spec.strategy.canary.steps[0]: setCanaryScale: exactly one of replicas, weight or matchTrafficWeight: true must be set",
    );
    let weight = "{spec: {strategy: {canary: {steps: [{setCanaryScale: {weight: 120}}]}}}}";
    rejected(
        weight,
        "setCanaryScale.weight: must be between 0 and 100, got 120",
    );
}

// ---------------------------------------------------------------------------
// pingPong

const PING_PONG: &str = r#"{spec: {strategy: {canary: {canaryService: "", stableService: "",
  pingPong: {pingService: backend-ping, pongService: backend-pong},
  trafficRouting: {alb: {rootService: backend-root}}}}}}"#;

/// The Service `name`'s hash and the weight its target group carries.
fn ping_pong_side(sim: &Simulation, name: &str) -> (Option<String>, i32) {
    let service = [&sim.world.stable_service, &sim.world.canary_service]
        .into_iter()
        .flatten()
        .find(|s| s.name == name)
        .unwrap();
    let key = "alb.ingress.kubernetes.io/actions.backend-root";
    let action = &sim.world.ingresses[0].annotations[key];
    let weight = rollout_core::alb::parse_action(action)
        .unwrap()
        .weight_of(name)
        .unwrap();
    (service.hash.clone(), weight)
}

#[test]
fn ping_pong_swaps_the_roles_at_each_promotion() {
    let mut sim = deployed("[{setWeight: 25}, {pause: {}}]", PING_PONG);
    let first = sim.hash();
    let stable_ping_pong = |sim: &Simulation| sim.status().unwrap().canary.stable_ping_pong.clone();
    // Pong is stable until a promotion says otherwise, as in Argo.
    assert_eq!(stable_ping_pong(&sim), None);
    assert_eq!(
        ping_pong_side(&sim, "backend-pong"),
        (Some(first.clone()), 100)
    );
    for (image, now_stable, now_canary) in [
        ("backend:2", "backend-ping", "backend-pong"),
        ("backend:3", "backend-pong", "backend-ping"),
    ] {
        let stable = sim.status().unwrap().stable_rs.clone();
        release(&mut sim, image);
        settle(&mut sim);
        let canary = sim.hash();
        assert_eq!(ping_pong_side(&sim, now_stable), (Some(canary.clone()), 25));
        assert_eq!(ping_pong_side(&sim, now_canary), (stable.clone(), 75));
        sim.promote();
        // Promoted: the canary's Service is the stable one, never re-pointed.
        let mut stable_moved = false;
        for _ in 0..20 {
            step(&mut sim);
            stable_moved |= ping_pong_side(&sim, now_canary).0 == Some(canary.clone())
                && sim.status().unwrap().stable_rs == stable;
            sim.advance(SignedDuration::from_secs(10));
        }
        settle(&mut sim);
        assert!(
            !stable_moved,
            "the old stable Service took the canary mid-canary"
        );
        assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));
        let want = if now_stable == "backend-ping" {
            "ping"
        } else {
            "pong"
        };
        assert_eq!(stable_ping_pong(&sim).as_deref(), Some(want));
        assert_eq!(
            ping_pong_side(&sim, now_stable),
            (Some(canary.clone()), 100)
        );
        // The other one, without weight, follows the new stable.
        assert_eq!(ping_pong_side(&sim, now_canary), (Some(canary.clone()), 0));
        assert_eq!(sim.replicas(&stable.unwrap()), 0);
    }

    rejected(
        r#"{spec: {strategy: {canary: {pingPong: {pingService: a, pongService: a}}}}}"#,
        "spec.strategy.canary.pingPong: pingService and pongService must be different Services",
    );
    rejected(
        r#"{spec: {strategy: {canary: {pingPong: {pingService: a, pongService: b}}}}}"#,
        "spec.strategy.canary.trafficRouting.alb.rootService: required with pingPong",
    );
    rejected(
        r#"{spec: {strategy: {canary: {trafficRouting: null, pingPong: {pingService: a, pongService: b}}}}}"#,
        "spec.strategy.canary.pingPong: needs trafficRouting.alb",
    );
    rejected(
        r#"{spec: {strategy: {canary: {pingPong: {pingService: a, pongService: b},
            trafficRouting: {alb: {direct: {ruleArn: r, stableTargetGroupArn: s, canaryTargetGroupArn: c}}}}}}}"#,
        "spec.strategy.canary.pingPong: not with trafficRouting.alb.direct",
    );
}

// ---------------------------------------------------------------------------
// trafficRouting.alb.ingresses

const TWO_INGRESSES: &str = r#"{spec: {strategy: {canary: {trafficRouting: {alb: {ingress: "", ingresses: [shop, shop-internal]}}}}}}"#;

/// The canary weight each Ingress carries.
fn carried(sim: &Simulation) -> Vec<Option<i32>> {
    let plan = validate(&sim.rollout.spec).unwrap();
    rollout_core::decide::ingress_weights(&sim.world, &plan).collect()
}

#[test]
fn every_ingress_carries_the_weights_and_a_step_waits_for_all() {
    let mut sim = deployed(
        "[{setWeight: 25}, {pause: {}}, {setWeight: 50}, {pause: {}}]",
        TWO_INGRESSES,
    );
    assert_eq!(carried(&sim), [Some(0), Some(0)]);
    release(&mut sim, "backend:2");
    settle(&mut sim);
    assert_eq!(carried(&sim), [Some(25), Some(25)]);
    // The internal ALB's annotation lost (say, a sync put it back): only
    // that Ingress is written again, and the next step waits for it.
    let key = "alb.ingress.kubernetes.io/actions.backend-service";
    let stale = sim.world.ingresses[0].annotations[key]
        .replace("\"Weight\":25", "\"Weight\":0")
        .replace("\"Weight\":75", "\"Weight\":100");
    sim.world.ingresses[1].annotations.insert(key.into(), stale);
    sim.promote();
    let actions = step(&mut sim);
    let written: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SetIngressAction { ingress, .. } => Some(ingress.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(written, ["shop-internal"], "{actions:?}");
    // The pause holds 25% on both before it may pass.
    assert_eq!(sim.status().unwrap().current_step_index, Some(1));
    settle(&mut sim);
    assert_eq!(carried(&sim), [Some(50), Some(50)]);
    sim.promote();
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));
    assert_eq!(carried(&sim), [Some(0), Some(0)]);

    // The Ingresses disagree (the internal one reverted to 0%) when a new
    // template comes: the old canary's pods keep their Service until no
    // Ingress sends them anything, however slow the new pods are.
    let mut sim = deployed("[{setWeight: 25}, {pause: {}}]", TWO_INGRESSES);
    release(&mut sim, "backend:2");
    settle(&mut sim);
    let first = sim.hash();
    let stale = sim.world.ingresses[0].annotations[key]
        .replace("\"Weight\":25", "\"Weight\":0")
        .replace("\"Weight\":75", "\"Weight\":100");
    sim.world.ingresses[1].annotations.insert(key.into(), stale);
    sim.kubelet = false;
    release(&mut sim, "backend:3");
    for _ in 0..10 {
        step(&mut sim);
        let canary_service = sim.world.canary_service.as_ref().unwrap();
        if canary_service.hash.as_deref() != Some(first.as_str()) {
            assert_eq!(
                carried(&sim),
                [Some(0), Some(0)],
                "re-pointed with weight on it"
            );
        }
        sim.advance(SignedDuration::from_secs(5));
    }

    // One of them missing: nothing moves, and the message names it.
    let mut sim = deployed("[{setWeight: 25}]", TWO_INGRESSES);
    sim.world.ingresses.retain(|i| i.name == "shop");
    release(&mut sim, "backend:2");
    sim.step();
    assert!(
        message(&sim).contains("ingress \"shop-internal\" not found"),
        "{}",
        message(&sim)
    );

    rejected(
        "{spec: {strategy: {canary: {trafficRouting: {alb: {ingresses: [a]}}}}}}",
        "spec.strategy.canary.trafficRouting.alb: give ingress or ingresses, not both",
    );
    rejected(
        "{spec: {strategy: {canary: {trafficRouting: {alb: {ingress: '', ingresses: [a, a]}}}}}}",
        "spec.strategy.canary.trafficRouting.alb.ingresses[1]: \"a\" is named twice",
    );
}

// ---------------------------------------------------------------------------
// trafficRouting.alb.stickinessConfig

#[test]
fn a_service_keeps_its_pods_until_sticky_clients_left_its_target_group() {
    let sticky = "{spec: {strategy: {canary: {trafficRouting: {alb: {stickinessConfig: {enabled: true, durationSeconds: 120}}}}}}}";
    let mut sim = deployed("[{setWeight: 25}, {pause: {}}]", sticky);
    let key = "alb.ingress.kubernetes.io/actions.backend-service";
    let action = &sim.world.ingresses[0].annotations[key];
    assert!(
        action.contains(r#""TargetGroupStickinessConfig":{"Enabled":true,"DurationSeconds":120}"#),
        "{action}"
    );
    // A canary's Service also waits out the stickiness since its group last
    // changed weight: here the first deploy, now 3 minutes ago.
    sim.advance(SignedDuration::from_secs(180));
    release(&mut sim, "backend:2");
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Paused), "{}", message(&sim));
    sim.promote();
    // The stable group's weight goes to 0 (all to the canary's) before its
    // Service switches: not until 120 s later.
    let mut emptied = None;
    let mut switched = None;
    for _ in 0..60 {
        let actions = step(&mut sim);
        if emptied.is_none() && sim.canary_weight() == Some(100) {
            emptied = Some(sim.world.now);
        }
        if actions.iter().any(|a| {
            matches!(a, Action::SetServiceSelector { service, .. } if service == "backend-service")
        }) {
            switched = Some(sim.world.now);
            break;
        }
        sim.advance(SignedDuration::from_secs(10));
    }
    let (emptied, switched) = (
        emptied.unwrap(),
        switched.expect("the stable Service switched"),
    );
    assert!(
        switched.duration_since(emptied) >= SignedDuration::from_secs(120),
        "switched {emptied} -> {switched}"
    );
    for _ in 0..30 {
        step(&mut sim);
        sim.advance(SignedDuration::from_secs(10));
    }
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));

    rejected(
        "{spec: {strategy: {canary: {trafficRouting: {alb: {stickinessConfig: {enabled: true, durationSeconds: 0}}}}}}}",
        "spec.strategy.canary.trafficRouting.alb.stickinessConfig.durationSeconds: must be 1 to 604800 seconds (7 days), got 0",
    );
}

// ---------------------------------------------------------------------------
// managedRoutes + setHeaderRoute

const ROUTES: &str = r#"{spec: {strategy: {canary: {trafficRouting: {managedRoutes: [{name: testers}, {name: mobile}],
  alb: {ingress: "", ingresses: [shop, shop-internal]}}}}}}"#;
const TESTERS: &str = "{setHeaderRoute: {name: testers, match: [{headerName: X-Canary, headerValue: {exact: 'yes'}}, {headerName: X-Canary, headerValue: {exact: 'on'}}]}}";
const MOBILE: &str = "{setHeaderRoute: {name: mobile, match: [{headerName: User-Agent, headerValue: {prefix: Mobile}}]}}";

/// Each Ingress's first rule's path backends, in order.
fn backends(sim: &Simulation) -> Vec<Vec<String>> {
    sim.world
        .ingresses
        .iter()
        .map(|i| {
            let paths = &i.rules[0].http.as_ref().unwrap().paths;
            let name = |p: &k8s_openapi::api::networking::v1::HTTPIngressPath| {
                p.backend.service.as_ref().unwrap().name.clone()
            };
            paths.iter().map(name).collect()
        })
        .collect()
}

#[test]
fn header_routes_go_to_every_ingress_in_managed_routes_order() {
    let steps = format!(
        "[{{setWeight: 20}}, {MOBILE}, {TESTERS}, {{pause: {{}}}}, {{setHeaderRoute: {{name: mobile}}}}, {{pause: {{}}}}]"
    );
    let mut sim = deployed(&steps, ROUTES);
    // Another path of the user's, to a Service of its own: a header route
    // does not pull its requests to the canary.
    for ingress in &mut sim.world.ingresses {
        let mut other = rollout_core::simulate::root_rule("frontend");
        let path = &mut other.http.as_mut().unwrap().paths[0];
        path.path = Some("/static".into());
        path.backend.service.as_mut().unwrap().port =
            Some(serde_json::from_str(r#"{"number": 80}"#).unwrap());
        let paths = &mut ingress.rules[0].http.as_mut().unwrap().paths;
        paths.insert(0, path.clone());
    }
    release(&mut sim, "backend:2");
    settle(&mut sim);
    assert_eq!(sim.status().unwrap().current_step_index, Some(3));
    let order = ["frontend", "testers", "mobile", "backend-service"].map(String::from);
    assert_eq!(backends(&sim), [order.clone(), order]);
    let status = sim.status().unwrap();
    assert_eq!(status.canary.header_routes, ["testers", "mobile"]);
    let conditions =
        &sim.world.ingresses[1].annotations["alb.ingress.kubernetes.io/conditions.testers"];
    assert_eq!(
        conditions,
        r#"[{"Field":"http-header","HttpHeaderConfig":{"HttpHeaderName":"X-Canary","Values":["yes","on"]}}]"#
    );
    // The internal Ingress lost the mobile route (a sync put the file
    // back): it is written again, and the pause holds until it is back.
    let internal = &mut sim.world.ingresses[1];
    internal
        .annotations
        .remove("alb.ingress.kubernetes.io/conditions.mobile");
    sim.promote();
    let actions = step(&mut sim);
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::SetIngressAction { ingress, .. } if ingress == "shop-internal")
        ),
        "{actions:?}"
    );
    assert_eq!(sim.status().unwrap().current_step_index, Some(3));
    settle(&mut sim);
    assert_eq!(sim.status().unwrap().current_step_index, Some(5));
    let order = ["frontend", "testers", "backend-service"].map(String::from);
    assert_eq!(backends(&sim), [order.clone(), order]);
    sim.promote();
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));
    let order = ["frontend", "backend-service"].map(String::from);
    assert_eq!(backends(&sim), [order.clone(), order]);
    assert!(sim.status().unwrap().canary.header_routes.is_empty());
    for ingress in &sim.world.ingresses {
        assert!(
            !ingress
                .annotations
                .keys()
                .any(|k| k.contains("testers") || k.contains("mobile")),
            "{:?}",
            ingress.annotations
        );
    }
}

#[test]
fn header_routes_are_checked_against_what_the_alb_can_match() {
    let route = |m: &str| {
        format!(
            "{{strategy: {{canary: {{trafficRouting: {{managedRoutes: [{{name: testers}}]}}, steps: [{{setWeight: 10}}, {{setHeaderRoute: {{name: testers, match: [{m}]}}}}]}}}}}}"
        )
    };
    let x = |value: &str| format!("{{headerName: X-Canary, headerValue: {value}}}");
    for (spec, why) in [
        (
            route(&x("{regex: '^y.*'}")),
            "steps[1]: setHeaderRoute.match[0].headerValue.regex: the AWS Load Balancer Controller's conditions annotation takes header values, not regular expressions",
        ),
        (
            route(&x("{exact: a, prefix: b}")),
            "setHeaderRoute.match[0].headerValue: exactly one of exact, prefix or regex must be set",
        ),
        (
            route("{headerName: 'X Canary', headerValue: {exact: a}}"),
            "setHeaderRoute.match[0].headerName: \"X Canary\" must be an HTTP header name",
        ),
        (
            route(&[x("{exact: a}"), x("{exact: b}"), x("{exact: c}"), x("{exact: d}")].join(", ")),
            "the ALB compares one header with at most 3 values, \"X-Canary\" has 4",
        ),
        (
            route(&[x("{exact: a}"), x("{exact: b}"), "{headerName: Y, headerValue: {exact: c}}".into(), "{headerName: Z, headerValue: {exact: d}}".into()].join(", ")),
            "at most 3 header values per route, got 4",
        ),
        (
            "{strategy: {canary: {trafficRouting: {managedRoutes: [{name: testers}]}, steps: [{setHeaderRoute: {name: other}}]}}}".into(),
            "spec.strategy.canary.steps[0].setHeaderRoute.name: \"other\" is not in trafficRouting.managedRoutes",
        ),
        (
            format!("{{strategy: {{canary: {{trafficRouting: {{managedRoutes: [{{name: testers}}]}}, steps: [{TESTERS}]}}}}}}"),
            "spec.strategy.canary.steps[0].setHeaderRoute: sends requests to the canary, which has no pods at this step",
        ),
        (
            "{strategy: {canary: {trafficRouting: {managedRoutes: [{name: Testers}, {name: backend-service}]}}}}".into(),
            "spec.strategy.canary.trafficRouting.managedRoutes[0].name: \"Testers\" must be a DNS label",
        ),
        (
            "{strategy: {canary: {trafficRouting: {managedRoutes: [{name: backend-service}]}}}}".into(),
            "managedRoutes[0].name: \"backend-service\" is the rootService",
        ),
        (
            "{strategy: {canary: {steps: [{setMirrorRoute: {name: m}}]}}}".into(),
            "setMirrorRoute steps are not supported by gantry: the ALB cannot mirror traffic",
        ),
    ] {
        rejected(&format!("{{spec: {spec}}}"), why);
    }
    // A setCanaryScale gives the canary pods without weight: a route may
    // follow it (Argo's usual shape).
    let ok = with(
        common::rollout(&format!("[{{setCanaryScale: {{replicas: 1}}}}, {TESTERS}]")),
        "{spec: {strategy: {canary: {trafficRouting: {managedRoutes: [{name: testers}]}}}}}",
    );
    validate(&ok.spec).unwrap();
}

// ---------------------------------------------------------------------------
// dynamicStableScale

#[test]
fn a_dynamically_scaled_stable_keeps_its_share_and_grows_back_first() {
    let dynamic = "{spec: {strategy: {canary: {dynamicStableScale: true}}}}";
    let mut sim = deployed(
        "[{setWeight: 20}, {pause: {}}, {setWeight: 60}, {pause: {}}, {setWeight: 40}, {pause: {}}]",
        dynamic,
    );
    let stable = sim.hash();
    release(&mut sim, "backend:2");
    settle(&mut sim);
    let canary = sim.hash();
    // 80% of 5 pods' traffic: 4 stable pods; 1 canary pod.
    assert_eq!((sim.replicas(&canary), sim.replicas(&stable)), (1, 4));
    sim.promote();
    settle(&mut sim);
    assert_eq!((sim.replicas(&canary), sim.replicas(&stable)), (3, 2));
    // A lower weight: the stable has its 3 pods before its 60% arrives,
    // and the canary keeps its 3 (they may still be serving).
    sim.promote();
    let mut seen = Vec::new();
    for _ in 0..20 {
        step(&mut sim);
        seen.push((sim.canary_weight(), sim.replicas(&stable)));
        sim.advance(SignedDuration::from_secs(5));
    }
    let first_40 = seen.iter().position(|(w, _)| *w == Some(40)).unwrap();
    assert!(seen[..first_40].iter().any(|(_, r)| *r == 3), "{seen:?}");
    assert_eq!((sim.replicas(&canary), sim.replicas(&stable)), (3, 3));
    // Promotion: the canary at full size takes all the traffic, the old
    // stable keeps one pod until its Service has moved, then goes.
    sim.promote();
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));
    assert_eq!((sim.replicas(&canary), sim.replicas(&stable)), (5, 1));
    for _ in 0..10 {
        step(&mut sim);
        sim.advance(SignedDuration::from_secs(5));
    }
    assert_eq!(sim.replicas(&stable), 0, "after the scale-down delay");

    rejected(
        "{spec: {strategy: {canary: {dynamicStableScale: true, scaleDownDelaySeconds: 30}}}}",
        "spec.strategy.canary.dynamicStableScale: not with scaleDownDelaySeconds",
    );
    rejected(
        "{spec: {strategy: {canary: {dynamicStableScale: true, trafficRouting: null}}}}",
        "spec.strategy.canary.dynamicStableScale: needs trafficRouting",
    );
}

// ---------------------------------------------------------------------------
// workloadRef

fn referencing(scale_down: &str) -> Simulation {
    let base = common::rollout(STEPS);
    let mut rollout = with(
        base.clone(),
        &format!(
            "{{spec: {{template: null, selector: null, workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: backend, scaleDown: {scale_down}}}}}}}"
        ),
    );
    rollout.spec.template = Default::default();
    let mut sim = Simulation::new(rollout);
    sim.world.workload = Some(WorkloadView {
        name: "backend".into(),
        replicas: 5,
        selector: base.spec.selector.clone(),
        template: base.spec.template.clone(),
    });
    sim
}

fn deployment_replicas(sim: &Simulation) -> i32 {
    sim.world.workload.as_ref().unwrap().replicas
}

#[test]
fn progressively_scales_the_deployment_down_as_the_rollout_comes_up() {
    let mut sim = referencing("progressively");
    sim.kubelet = false;
    step(&mut sim);
    let hash = sim.hash();
    assert_eq!(deployment_replicas(&sim), 5, "nothing available yet");
    sim.world.replica_sets[0].available = 2;
    step(&mut sim);
    assert_eq!(deployment_replicas(&sim), 3);
    sim.kubelet = true;
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(deployment_replicas(&sim), 0);
    assert_eq!(
        sim.status().unwrap().selector.as_deref(),
        Some("app=backend")
    );
    // A new template in the Deployment is a canary of the Rollout.
    release(&mut sim, "backend:2");
    settle(&mut sim);
    assert_ne!(sim.hash(), hash);
    assert_eq!(sim.phase(), Some(Phase::Paused));
    assert_eq!(sim.canary_weight(), Some(20));
    assert_eq!(
        deployment_replicas(&sim),
        0,
        "never scaled up for a later release"
    );
}

#[test]
fn progressively_scales_the_deployment_back_up_when_the_migration_fails() {
    let mut sim = referencing("progressively");
    sim.rollout.spec.progress_deadline_seconds = Some(60);
    sim.kubelet = false;
    step(&mut sim);
    sim.world.replica_sets[0].available = 4;
    step(&mut sim);
    assert_eq!(deployment_replicas(&sim), 1);
    sim.world.replica_sets[0].available = 0;
    sim.advance(SignedDuration::from_secs(61));
    step(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    assert_eq!(deployment_replicas(&sim), 5);
}

#[test]
fn onsuccess_waits_for_healthy_and_never_leaves_the_deployment_alone() {
    let mut sim = referencing("onsuccess");
    sim.kubelet = false;
    step(&mut sim);
    sim.world.replica_sets[0].available = 4;
    step(&mut sim);
    assert_eq!(deployment_replicas(&sim), 5);
    sim.kubelet = true;
    settle(&mut sim);
    assert_eq!(deployment_replicas(&sim), 0);

    let mut sim = referencing("never");
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    assert_eq!(deployment_replicas(&sim), 5);
}

#[test]
fn a_missing_deployment_is_reported_and_nothing_is_created() {
    let mut sim = referencing("never");
    sim.world.workload = None;
    let actions = step(&mut sim);
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    assert!(
        message(&sim).contains("Deployment \"backend\" not found"),
        "{}",
        message(&sim)
    );
}

#[test]
fn workload_ref_is_a_deployment_instead_of_a_template() {
    let extra = "{spec: {workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: db}}}";
    rejected(
        extra,
        "spec.template: give template or workloadRef, not both",
    );
    rejected(extra, "only apiVersion apps/v1, kind Deployment");
    let e = errors(with(
        common::rollout(STEPS),
        "{spec: {template: null, selector: null}}",
    ));
    assert!(
        e.contains("spec.template: required (or workloadRef)"),
        "{e}"
    );
    assert!(
        e.contains("spec.selector: required (or workloadRef)"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// dryRun

fn two_metrics(dry_run: &str) -> AnalysisTemplate {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: checks, namespace: shop}}
spec:
  dryRun: {dry_run}
  metrics:
  - name: error-rate
    successCondition: result[0] < 0.05
    provider: {{prometheus: {{address: "http://p:9090", query: errors}}}}
  - name: latency
    successCondition: result[0] < 0.3
    provider: {{prometheus: {{address: "http://p:9090", query: latency}}}}
"#
    ))
    .unwrap()
}

fn analysed(dry_run: &str, error_rate: f64, latency: f64) -> Simulation {
    let mut sim = deployed(
        "[{setWeight: 20}, {analysis: {templates: [{templateName: checks}]}}, {setWeight: 60}]",
        "{}",
    );
    sim.world
        .templates
        .insert("checks".into(), two_metrics(dry_run).spec);
    sim.prometheus
        .insert("error-rate".into(), QueryValue::Vector(vec![error_rate]));
    sim.prometheus
        .insert("latency".into(), QueryValue::Vector(vec![latency]));
    release(&mut sim, "backend:2");
    settle(&mut sim);
    sim
}

#[test]
fn a_failing_dry_run_metric_is_recorded_but_never_aborts() {
    let sim = analysed("[{metricName: latency}]", 0.01, 0.9);
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));
    let run = &sim.status().unwrap().analysis_runs[0];
    assert_eq!(run.phase, AnalysisPhase::Successful);
    let latency = run.metrics.iter().find(|m| m.name == "latency").unwrap();
    assert!(latency.dry_run);
    assert_eq!(latency.phase, AnalysisPhase::Failed);
    assert!(
        run.message
            .as_deref()
            .unwrap_or("")
            .starts_with("dry run: metric \"latency\" assessed Failed")
    );
    // The metric that is not in dry run still judges.
    let sim = analysed("[{metricName: latency}]", 0.5, 0.1);
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    // `.*`: every metric.
    let sim = analysed("[{metricName: '.*'}]", 0.5, 0.9);
    assert_eq!(sim.phase(), Some(Phase::Healthy));
}

#[test]
fn a_bad_dry_run_pattern_is_reported_at_its_path() {
    let sim = analysed("[{metricName: '('}]", 0.01, 0.1);
    assert_eq!(sim.phase(), Some(Phase::Degraded));
    assert!(
        message(&sim).contains(
            "AnalysisTemplate checks: spec.dryRun[0].metricName: not a regular expression"
        ),
        "{}",
        message(&sim)
    );
}

#[test]
fn a_retry_after_a_deadline_abort_gets_a_fresh_deadline() {
    let extra = "{spec: {progressDeadlineSeconds: 60, progressDeadlineAbort: true}}";
    let mut sim = deployed(STEPS, extra);
    sim.kubelet = false;
    release(&mut sim, "backend:2");
    step(&mut sim);
    step(&mut sim);
    sim.advance(SignedDuration::from_secs(61));
    step(&mut sim);
    step(&mut sim);
    assert!(
        sim.status().unwrap().aborted_at.is_some(),
        "{}",
        message(&sim)
    );
    sim.operate(rollout_core::ops::Op::Retry).unwrap();
    step(&mut sim);
    sim.advance(SignedDuration::from_secs(30));
    step(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Progressing), "{}", message(&sim));
    assert!(!sim.status().unwrap().abort);
}

#[test]
fn a_step_analysis_longer_than_the_deadline_is_not_a_stuck_rollout() {
    let mut sim = deployed(
        "[{setWeight: 20}, {analysis: {templates: [{templateName: slow}]}}, {setWeight: 60}]",
        "{spec: {progressDeadlineSeconds: 60}}",
    );
    let template: AnalysisTemplate = serde_yaml::from_str(
        r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: slow, namespace: shop}
spec:
  metrics:
  - name: errors
    interval: 1m
    count: 5
    successCondition: result[0] < 0.05
    provider: {prometheus: {address: "http://p:9090", query: errors}}
"#,
    )
    .unwrap();
    sim.world.templates.insert("slow".into(), template.spec);
    sim.prometheus
        .insert("errors".into(), QueryValue::Vector(vec![0.01]));
    release(&mut sim, "backend:2");
    for _ in 0..12 {
        step(&mut sim);
        assert_ne!(sim.phase(), Some(Phase::Degraded), "{}", message(&sim));
        sim.advance(SignedDuration::from_secs(30));
    }
    settle(&mut sim);
    assert_eq!(sim.phase(), Some(Phase::Healthy), "{}", message(&sim));
}
