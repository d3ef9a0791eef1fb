//! Traffic safety at the ALB, through the pure decision on the simulated
//! cluster whose AWS Load Balancer Controller and ALB keep AWS's timing
//! (targets `initial` until health checks pass, `draining` after they
//! leave, everything the LB controller does `lag` late). The simulation
//! records a lost request wherever one would be: weight on a target group
//! without a healthy target of a ready pod, or a pod deleted while it is
//! still a target. Each scenario runs with the LB controller 0, 2 and 10 s
//! late, with target health read from ELBv2 and without (annotation-only
//! mode: settle and drain times assumed, or the LB controller's readiness
//! gates); and Argo Rollouts' ordering, replayed on the same simulation,
//! loses requests.

use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;
use rollout_core::alb::{ForwardWeights, annotations};
use rollout_core::decide::GATE_TIMEOUT_REASON;
use rollout_core::ops::Op;
use rollout_core::simulate::Simulation;
use rollout_core::types::{GateKind, Phase, Rollout};
use rollout_core::validate::validate;
use rollout_core::world::Observed;

mod common;
use common::alb_routing;

const STEPS: &str = "[{setWeight: 25}, {pause: {duration: 5s}}, {setWeight: 50}, {pause: {}}]";
const HEALTH_CHECK: i64 = 5;
const DEREGISTRATION: i64 = 10;

/// What the controller sees of target health.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sight {
    /// DescribeTargetHealth.
    Elbv2,
    /// EndpointSlices only: settle and drain times assumed.
    Endpoints,
    /// EndpointSlices, and the pods carry the LB controller's readiness
    /// gates (injection enabled in the namespace).
    ReadinessGates,
    /// DescribeTargetHealth, and the pods carry readiness gates too.
    Elbv2AndGates,
}
use Sight::*;

/// `backend` deployed behind an ALB whose LB controller is `lag` seconds
/// late, seen as `sight` says; without ELBv2 the assumed settle time is
/// what the ALB takes.
fn deployed(lag: i64, sight: Sight) -> Simulation {
    deployed_settling(lag, sight, lag + HEALTH_CHECK)
}

fn deployed_settling(lag: i64, sight: Sight, settle: i64) -> Simulation {
    deployed_rollout(common::rollout(STEPS), lag, sight, settle)
}

fn deployed_rollout(mut rollout: Rollout, lag: i64, sight: Sight, settle: i64) -> Simulation {
    let timing = format!("{{settleSeconds: {settle}, drainSeconds: {DEREGISTRATION}}}");
    alb_routing(&mut rollout).target_health = Some(serde_yaml::from_str(&timing).unwrap());
    let mut sim = Simulation::new(rollout);
    sim.lb.lag = SignedDuration::from_secs(lag);
    sim.lb.health_check = SignedDuration::from_secs(HEALTH_CHECK);
    sim.lb.deregistration = SignedDuration::from_secs(DEREGISTRATION);
    if matches!(sight, Elbv2 | Elbv2AndGates) {
        sim.world.alb = Some(Ok(Observed::placeholder()));
    }
    sim.readiness_gates = matches!(sight, ReadinessGates | Elbv2AndGates);
    run_until(&mut sim, |s| s.phase() == Some(Phase::Healthy));
    // Nothing was served before the first version's targets were healthy.
    sim.violations.clear();
    sim
}

fn set_image(sim: &mut Simulation, image: &str) {
    sim.rollout.spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
    *sim.rollout.metadata.generation.get_or_insert(0) += 1;
}

/// Reconciles, letting time pass as the decision asks (at most 5 s at a
/// time, so the ALB is watched closely), until `done`; panics after a
/// simulated hour.
fn run_until(sim: &mut Simulation, done: impl Fn(&Simulation) -> bool) {
    let start = sim.world.now;
    while !done(sim) {
        let d = sim.step();
        let wait = d.requeue_after.unwrap_or(Duration::from_secs(5));
        let wait = wait.min(Duration::from_secs(5)).max(Duration::from_secs(1));
        sim.advance(SignedDuration::try_from(wait).unwrap());
        assert!(
            sim.world.now.duration_since(start) < SignedDuration::from_hours(1),
            "stuck: {:#?}",
            sim.status()
        );
    }
}

fn step_index(sim: &Simulation) -> i32 {
    sim.status().and_then(|s| s.current_step_index).unwrap_or(0)
}

/// Runs `scenario` for every LB-controller lag and every sight.
fn each_alb(scenario: impl Fn(&mut Simulation)) {
    each_alb_of(&common::rollout(STEPS), scenario)
}

fn each_alb_of(rollout: &Rollout, scenario: impl Fn(&mut Simulation)) {
    for lag in [0, 2, 10] {
        for sight in [Elbv2, Endpoints, ReadinessGates, Elbv2AndGates] {
            let mut sim = deployed_rollout(rollout.clone(), lag, sight, lag + HEALTH_CHECK);
            scenario(&mut sim);
            assert!(
                sim.violations.is_empty(),
                "lag {lag}s, {sight:?}: {:#?}",
                sim.violations
            );
        }
    }
}

#[test]
fn a_release_to_promotion_loses_no_request() {
    each_alb(|sim| {
        let old = sim.hash();
        set_image(sim, "backend:2");
        run_until(sim, |s| step_index(s) == 3);
        sim.promote();
        run_until(sim, |s| {
            s.phase() == Some(Phase::Healthy) && s.replicas(&old) == 0
        });
    });
}

#[test]
fn an_abort_at_half_loses_no_request() {
    each_alb(|sim| {
        set_image(sim, "backend:2");
        let canary = sim.hash();
        run_until(sim, |s| step_index(s) == 3);
        sim.operate(Op::Abort).unwrap();
        run_until(sim, |s| {
            s.phase() == Some(Phase::Degraded) && s.replicas(&canary) == 0
        });
        assert_eq!(sim.canary_weight(), Some(0));
    });
}

#[test]
fn a_new_image_at_a_quarter_loses_no_request() {
    each_alb(|sim| {
        set_image(sim, "backend:2");
        let intermediate = sim.hash();
        run_until(sim, |s| step_index(s) == 1);
        set_image(sim, "backend:3");
        run_until(sim, |s| {
            step_index(s) == 3 && s.replicas(&intermediate) == 0
        });
        sim.promote();
        run_until(sim, |s| s.phase() == Some(Phase::Healthy));
    });
}

#[test]
fn a_rollback_to_the_stable_template_loses_no_request() {
    each_alb(|sim| {
        set_image(sim, "backend:2");
        let canary = sim.hash();
        run_until(sim, |s| step_index(s) == 3);
        set_image(sim, "backend:1");
        run_until(sim, |s| {
            s.phase() == Some(Phase::Healthy) && s.replicas(&canary) == 0
        });
    });
}

#[test]
fn a_promotion_moves_all_traffic_to_the_canary_before_the_stable_service_switches() {
    let mut sim = deployed(2, Elbv2);
    set_image(&mut sim, "backend:2");
    let canary = sim.hash();
    run_until(&mut sim, |s| step_index(s) == 3);
    sim.promote();
    let mut weights_at_switch = None;
    while sim.phase() != Some(Phase::Healthy) {
        let stable_before = sim.world.stable_service.as_ref().unwrap().hash.clone();
        sim.step();
        let stable_after = sim.world.stable_service.as_ref().unwrap().hash.clone();
        if stable_before != stable_after && stable_after.as_deref() == Some(canary.as_str()) {
            let aws = sim.world.alb.as_ref().unwrap().as_ref().unwrap();
            weights_at_switch = aws.weights;
        }
        sim.advance(SignedDuration::from_secs(1));
    }
    assert_eq!(
        weights_at_switch,
        Some((100, 0)),
        "the ALB sent everything to the canary's group when the stable Service switched"
    );
    assert!(sim.violations.is_empty(), "{:#?}", sim.violations);
}

#[test]
fn a_scale_down_waits_until_the_pods_left_every_target_group() {
    let mut sim = deployed(10, Elbv2);
    // Drains outlast the scale-down delay (30 s).
    sim.lb.deregistration = SignedDuration::from_secs(60);
    let old = sim.hash();
    set_image(&mut sim, "backend:2");
    run_until(&mut sim, |s| step_index(s) == 3);
    sim.promote();
    run_until(&mut sim, |s| s.phase() == Some(Phase::Healthy));
    // The scale-down delay passed; the old pods are still draining.
    run_until(&mut sim, |s| {
        s.status()
            .unwrap()
            .traffic_gates
            .iter()
            .any(|g| g.kind == GateKind::TargetsDrained)
    });
    assert_eq!(sim.replicas(&old), 5);
    let gate = sim.status().unwrap().traffic_gates[0].clone();
    assert_eq!(gate.target, format!("backend-{old}"));
    assert!(
        gate.message
            .contains("target(s) still registered or draining in"),
        "{}",
        gate.message
    );
    run_until(&mut sim, |s| s.replicas(&old) == 0);
    assert!(sim.status().unwrap().traffic_gates.is_empty());
    assert!(sim.violations.is_empty(), "{:#?}", sim.violations);
}

fn canary_selects(sim: &Simulation, hash: &str) -> bool {
    let service = sim.world.canary_service.as_ref().unwrap();
    service.hash.as_deref() == Some(hash)
}

/// The pods carry the LB controller's readiness gates, and the settle time
/// is far longer than the ALB takes: the canary's weight moves as soon as
/// its pods are Ready, i.e. healthy in its group. The stable's group after
/// the selector switch still waits the settle time: the new pods were
/// created before the stable Service selected them, so they carry no gate
/// for its group.
#[test]
fn readiness_gates_move_the_canary_weight_without_the_settle_time() {
    const SETTLE: i64 = 600;
    for sight in [ReadinessGates, Endpoints] {
        let mut sim = deployed_settling(2, sight, SETTLE);
        // A release long after the last one: no earlier change to wait out.
        sim.advance(SignedDuration::from_secs(SETTLE));
        set_image(&mut sim, "backend:2");
        let start = sim.world.now;
        run_until(&mut sim, |s| s.canary_weight() == Some(25));
        let first = sim.world.now.duration_since(start).as_secs();
        run_until(&mut sim, |s| step_index(s) == 3);
        sim.promote();
        let promoted = sim.world.now;
        run_until(&mut sim, |s| s.phase() == Some(Phase::Healthy));
        let promotion = sim.world.now.duration_since(promoted).as_secs();
        assert!(
            sim.violations.is_empty(),
            "{sight:?}: {:#?}",
            sim.violations
        );
        match sight {
            // Registered 2 s late, healthy 5 s later, looked at every 5 s.
            ReadinessGates => assert!(first <= 20, "weight moved after {first}s"),
            _ => assert!(first >= SETTLE, "weight moved after {first}s"),
        }
        assert!(promotion >= SETTLE, "{sight:?}: promoted in {promotion}s");
    }
}

/// Back to an earlier canary whose pods still run: their gate for the
/// canary's group passed when they were last behind its Service, and says
/// nothing about now (the LB controller registers them again `lag` later):
/// the weight waits until they pass again.
#[test]
fn a_gate_that_passed_before_the_service_came_back_is_not_trusted() {
    let mut sim = deployed_settling(10, ReadinessGates, 60);
    sim.advance(SignedDuration::from_secs(60));
    set_image(&mut sim, "backend:2");
    let earlier = sim.hash();
    run_until(&mut sim, |s| s.canary_weight() == Some(25));
    set_image(&mut sim, "backend:3");
    let next = sim.hash();
    run_until(&mut sim, |s| canary_selects(s, &next));
    set_image(&mut sim, "backend:2");
    run_until(&mut sim, |s| canary_selects(s, &earlier));
    let back = sim.world.now;
    let endpoints = &sim.world.canary_service.as_ref().unwrap().endpoints;
    assert!(
        !endpoints.is_empty()
            && endpoints
                .iter()
                .all(|e| e.health_gate.is_some_and(|g| g.healthy)),
        "the earlier canary's pods are back with their old gates: {endpoints:#?}"
    );
    // Only their gates passing again (registered 10 s late, healthy 5 s
    // later) lets the weight move.
    run_until(&mut sim, |s| s.canary_weight() == Some(25));
    let waited = sim.world.now.duration_since(back).as_secs();
    assert!(waited >= 15, "weight moved after {waited}s");
    assert!(sim.violations.is_empty(), "{:#?}", sim.violations);
}

/// An abort points the canary Service back at the stable's pods, which
/// carry its gate from the first deploy: the LB controller registers them
/// again, and their gate is false until they pass the health checks. A
/// release right then must not take the canary Service away before that,
/// or the stable's pods stay unready for good (the LB controller sets a
/// gate only while its pod is behind the gate's Service).
#[test]
fn the_canary_service_leaves_pods_only_once_their_gates_passed() {
    for sight in [ReadinessGates, Elbv2AndGates] {
        let mut sim = deployed(10, sight);
        let stable = sim.hash();
        set_image(&mut sim, "backend:2");
        run_until(&mut sim, |s| s.canary_weight() == Some(25));
        sim.operate(Op::Abort).unwrap();
        run_until(&mut sim, |s| canary_selects(s, &stable));
        set_image(&mut sim, "backend:3");
        run_until(&mut sim, |s| s.canary_weight() == Some(25));
        let endpoints = &sim.world.stable_service.as_ref().unwrap().endpoints;
        assert!(
            endpoints.len() == 5 && endpoints.iter().all(|e| e.ready),
            "{sight:?}: {endpoints:#?}"
        );
        assert!(
            sim.violations.is_empty(),
            "{sight:?}: {:#?}",
            sim.violations
        );
    }
}

#[test]
fn without_elbv2_the_settle_and_drain_times_come_from_the_ingress() {
    let mut rollout = common::rollout(STEPS);
    alb_routing(&mut rollout).target_health = None;
    let mut sim = Simulation::new(rollout);
    let ingress = &mut sim.world.ingresses[0];
    for (k, v) in [
        ("healthcheck-interval-seconds", "10"),
        ("healthy-threshold-count", "3"),
        (
            "target-group-attributes",
            "stickiness.enabled=false,deregistration_delay.timeout_seconds=60",
        ),
    ] {
        ingress
            .annotations
            .insert(format!("alb.ingress.kubernetes.io/{k}"), v.into());
    }
    run_until(&mut sim, |s| s.phase() == Some(Phase::Healthy));
    let old = sim.hash();
    set_image(&mut sim, "backend:2");
    let start = sim.world.now;
    run_until(&mut sim, |s| s.canary_weight() == Some(25));
    let waited = sim.world.now.duration_since(start).as_secs();
    // The canary Service waits 30 s after its weight left (10 s × 3), its
    // pods another 30 s once ready behind it (and the reconciles between,
    // 5 s apart here).
    assert!((60..=80).contains(&waited), "weight moved after {waited}s");
    run_until(&mut sim, |s| step_index(s) == 3);
    sim.promote();
    run_until(&mut sim, |s| s.phase() == Some(Phase::Healthy));
    let completed = sim.world.now;
    let rs = sim
        .world
        .replica_sets
        .iter()
        .find(|r| r.hash == old)
        .unwrap();
    let due = rs.scale_down_at.expect("scheduled");
    // Settle (30 s) + deregistration delay (60 s), more than the 30 s delay.
    let after = due.duration_since(completed).as_secs();
    assert!(
        (85..=90).contains(&after),
        "scaled down {after}s after completion"
    );
    assert!(sim.violations.is_empty(), "{:#?}", sim.violations);
}

#[test]
fn a_gate_that_waits_too_long_aborts_the_canary() {
    let mut sim = deployed(0, Elbv2);
    alb_routing(&mut sim.rollout).target_health =
        Some(serde_yaml::from_str("{timeoutSeconds: 60}").unwrap());
    // The LB controller is down: no target is ever registered.
    sim.lb_controller = false;
    set_image(&mut sim, "backend:2");
    run_until(&mut sim, |s| {
        s.status().is_some_and(|st| !st.traffic_gates.is_empty())
    });
    let gate = sim.status().unwrap().traffic_gates[0].clone();
    assert_eq!(gate.kind, GateKind::TargetsHealthy);
    run_until(&mut sim, |s| s.phase() == Some(Phase::Degraded));
    let status = sim.status().unwrap();
    assert!(status.abort);
    let healthy = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Healthy")
        .unwrap();
    assert_eq!(healthy.reason.as_deref(), Some(GATE_TIMEOUT_REASON));
    assert!(
        healthy
            .message
            .as_deref()
            .unwrap()
            .starts_with("traffic gate timed out after 1m:"),
        "{healthy:?}"
    );
    assert_eq!(sim.canary_weight(), Some(0));
}

#[test]
fn argos_ordering_loses_requests_in_the_same_simulation() {
    // At the end of the canary Argo points the stable Service at the new
    // pods and sends all weight back to it at once.
    for lag in [0, 2, 10] {
        let mut sim = deployed(lag, Elbv2);
        set_image(&mut sim, "backend:2");
        let canary = sim.hash();
        run_until(&mut sim, |s| step_index(s) == 3);
        assert!(sim.violations.is_empty(), "{:#?}", sim.violations);
        sim.world.stable_service.as_mut().unwrap().hash = Some(canary.clone());
        let plan = validate(&sim.rollout.spec).unwrap();
        let alb = plan.alb.as_ref().unwrap();
        let ingress = &mut sim.world.ingresses[0];
        let weights = ForwardWeights::of(&plan, alb, 0);
        let written = annotations(&ingress.annotations, "backend", alb, &weights);
        ingress
            .annotations
            .extend(written.into_iter().filter_map(|(k, v)| Some((k, v?))));
        sim.advance(SignedDuration::from_secs(30));
        assert!(
            sim.violations.iter().any(|v| v.starts_with(
                "100% of traffic to backend-service's target group with no healthy target"
            )),
            "lag {lag}s: {:#?}",
            sim.violations
        );
    }
}

// ---------------------------------------------------------------------------
// Header routes: requests matching them go to the canary's group whatever
// its weight, so they count as traffic there.

/// A quarter of the traffic, then testers' requests (`X-Canary: yes`) too.
fn routed() -> Rollout {
    let mut rollout = common::rollout(
        "[{setWeight: 25}, {setHeaderRoute: {name: testers, match: [{headerName: X-Canary, headerValue: {exact: 'yes'}}]}}, {pause: {}}]",
    );
    let canary = rollout.spec.strategy.canary.as_mut().unwrap();
    canary.traffic_routing.as_mut().unwrap().managed_routes =
        Some(serde_yaml::from_str("[{name: testers}]").unwrap());
    rollout
}

fn routes_on_ingress(sim: &Simulation) -> bool {
    let key = "alb.ingress.kubernetes.io/conditions.testers";
    sim.world.ingresses[0].annotations.contains_key(key)
}

#[test]
fn a_header_route_to_promotion_loses_no_request() {
    each_alb_of(&routed(), |sim| {
        let old = sim.hash();
        set_image(sim, "backend:2");
        run_until(sim, |s| step_index(s) == 2);
        assert!(routes_on_ingress(sim));
        sim.promote();
        run_until(sim, |s| {
            s.phase() == Some(Phase::Healthy) && s.replicas(&old) == 0
        });
        assert!(!routes_on_ingress(sim), "promotion removes the route");
    });
}

#[test]
fn an_abort_with_a_header_route_loses_no_request() {
    each_alb_of(&routed(), |sim| {
        set_image(sim, "backend:2");
        let canary = sim.hash();
        run_until(sim, |s| step_index(s) == 2);
        sim.operate(Op::Abort).unwrap();
        run_until(sim, |s| {
            s.phase() == Some(Phase::Degraded) && s.replicas(&canary) == 0
        });
        assert!(!routes_on_ingress(sim), "abort removes the route");
    });
}

#[test]
fn a_new_image_under_a_header_route_loses_no_request() {
    each_alb_of(&routed(), |sim| {
        set_image(sim, "backend:2");
        let intermediate = sim.hash();
        run_until(sim, |s| step_index(s) == 2);
        set_image(sim, "backend:3");
        run_until(sim, |s| {
            step_index(s) == 2 && s.replicas(&intermediate) == 0
        });
        assert!(
            routes_on_ingress(sim),
            "the new canary gets the route again"
        );
        sim.promote();
        run_until(sim, |s| s.phase() == Some(Phase::Healthy));
    });
}

// ---------------------------------------------------------------------------
// dynamicStableScale: the stable shrinks to its share once the weight
// moved, its pods stopping gracefully (a preStop sleep) while the ALB
// deregisters them.

fn dynamic() -> Rollout {
    let mut rollout = common::rollout(
        "[{setWeight: 25}, {pause: {duration: 5s}}, {setWeight: 75}, {pause: {}}, {setWeight: 50}, {pause: {}}]",
    );
    set_dynamic(&mut rollout, Some(true));
    rollout
}

fn set_dynamic(rollout: &mut Rollout, on: Option<bool>) {
    rollout
        .spec
        .strategy
        .canary
        .as_mut()
        .unwrap()
        .dynamic_stable_scale = on;
}

#[test]
fn a_dynamically_scaled_stable_shrinks_and_grows_back_losing_no_request() {
    each_alb_of(&dynamic(), |sim| {
        let stable = sim.hash();
        set_image(sim, "backend:2");
        run_until(sim, |s| step_index(s) == 3 && s.replicas(&stable) == 2);
        // 75% to the canary: the stable keeps 2 of 5 for its 25%.
        assert_eq!(sim.canary_weight(), Some(75));
        sim.promote();
        // Back to 50%: 3 stable pods before the weight returns.
        run_until(sim, |s| step_index(s) == 5);
        assert_eq!(sim.canary_weight(), Some(50));
        assert_eq!(sim.replicas(&stable), 3);
        sim.promote();
        run_until(sim, |s| {
            s.phase() == Some(Phase::Healthy) && s.replicas(&stable) == 0
        });
    });
}

#[test]
fn an_abort_grows_the_stable_back_before_the_weight_returns() {
    each_alb_of(&dynamic(), |sim| {
        let stable = sim.hash();
        set_image(sim, "backend:2");
        let canary = sim.hash();
        run_until(sim, |s| step_index(s) == 3 && s.replicas(&stable) == 2);
        sim.operate(Op::Abort).unwrap();
        run_until(sim, |s| {
            s.phase() == Some(Phase::Degraded) && s.replicas(&canary) == 0
        });
        assert_eq!(sim.replicas(&stable), 5);
        assert_eq!(sim.canary_weight(), Some(0));
    });
}

#[test]
fn a_stable_created_without_the_pre_stop_hook_keeps_its_size() {
    // Deployed before dynamicStableScale was set: its pods would stop at
    // once when deleted, and the ALB may still send them requests.
    let mut before = dynamic();
    set_dynamic(&mut before, None);
    let mut sim = deployed_rollout(before, 10, Endpoints, 10 + HEALTH_CHECK);
    let stable = sim.hash();
    set_dynamic(&mut sim.rollout, Some(true));
    set_image(&mut sim, "backend:2");
    run_until(&mut sim, |s| step_index(s) == 3);
    let later = sim.world.now + SignedDuration::from_mins(2);
    run_until(&mut sim, |s| s.world.now >= later);
    assert!(sim.violations.is_empty(), "{:#?}", sim.violations);
    assert_eq!(
        sim.replicas(&stable),
        5,
        "no hook: the stable keeps its size"
    );
}
