//! Notifications through the real decision on the simulated cluster: each
//! occurrence of three releases once and in order (a pause of the next
//! release is not taken for one already sent), nothing again on later
//! reconciles or after a restart (the record is the status), an abort and
//! Degraded, a retry told again from its start, and a Rollout subscribed
//! mid-canary not told its past.

use k8s_openapi::jiff::SignedDuration;
use rollout_core::notify::{Occurrence, Trigger, due, occurrences};
use rollout_core::ops::Op;
use rollout_core::simulate::Simulation;
use rollout_core::types::{AnalysisPhase, AnalysisRunStatus, MetricResult, Rollout};
use rollout_core::validate::validate;

mod common;

const STEPS: &str = "[{setWeight: 20}, {pause: {}}, {setWeight: 50}, {pause: {duration: 30s}}]";

fn settle(sim: &mut Simulation) {
    sim.step();
    sim.settle().expect("settles");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

fn release(sim: &mut Simulation, image: &str) {
    sim.rollout.spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
    *sim.rollout.metadata.generation.get_or_insert(0) += 1;
    settle(sim);
}

/// The keys sent since the last call, with the revision's hash shown as `H`.
fn sent(sim: &mut Simulation) -> Vec<String> {
    let sent = std::mem::take(sim.notifications.as_mut().unwrap());
    sent.iter()
        .map(|o| o.key.replace(&o.revision, "H"))
        .collect()
}

/// A release through both pauses to completion.
fn through(sim: &mut Simulation, image: &str) -> Vec<String> {
    release(sim, image);
    let mut keys = sent(sim);
    sim.promote();
    settle(sim);
    keys.extend(sent(sim));
    sim.advance(SignedDuration::from_secs(31));
    settle(sim);
    keys.extend(sent(sim));
    keys
}

/// Promoted at the first pause: what is sent up to the second.
fn promoted_to_the_second_pause(sim: &mut Simulation) {
    sim.promote();
    settle(sim);
    assert_eq!(
        sent(sim),
        ["step-completed/H/2", "step-completed/H/3", "paused/H/4"]
    );
}

#[test]
fn each_occurrence_of_three_releases_is_sent_once_in_order() {
    let mut sim = Simulation::new(common::rollout(STEPS));
    sim.notifications = Some(Vec::new());
    settle(&mut sim);
    assert_eq!(sent(&mut sim), ["completed/H"], "a first deploy completes");
    let release = [
        "rollout-started/H",
        "step-completed/H/1",
        "paused/H/2",
        "step-completed/H/2",
        "step-completed/H/3",
        "paused/H/4",
        "step-completed/H/4",
        "completed/H",
    ];
    for image in ["backend:2", "backend:3", "backend:4"] {
        assert_eq!(through(&mut sim, image), release, "{image}");
        let notified = sim.status().unwrap().notified.clone().unwrap();
        assert_eq!(
            notified.len(),
            release.len(),
            "only this revision's keys are kept"
        );
    }
    for _ in 0..3 {
        sim.step();
    }
    assert!(
        sent(&mut sim).is_empty(),
        "nothing again on later reconciles"
    );
}

#[test]
fn a_restarted_controller_sends_nothing_twice() {
    let mut sim = Simulation::new(common::rollout(STEPS));
    sim.notifications = Some(Vec::new());
    settle(&mut sim);
    sent(&mut sim);
    release(&mut sim, "backend:2");
    assert_eq!(sent(&mut sim).len(), 3);
    // A new process reads the Rollout back from the API server.
    let json = serde_json::to_string(&sim.rollout).unwrap();
    sim.rollout = serde_json::from_str::<Rollout>(&json).unwrap();
    sim.step();
    assert!(sent(&mut sim).is_empty());
    promoted_to_the_second_pause(&mut sim);
}

#[test]
fn an_abort_is_aborted_and_degraded_once_and_a_retry_starts_again() {
    let mut sim = Simulation::new(common::rollout(STEPS));
    sim.notifications = Some(Vec::new());
    settle(&mut sim);
    release(&mut sim, "backend:2");
    sent(&mut sim);
    sim.operate(Op::Abort).unwrap();
    settle(&mut sim);
    let keys = sent(&mut sim);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].starts_with("aborted/H/20"), "{keys:?}");
    assert!(keys[1].starts_with("degraded/H/"), "{keys:?}");
    let aborted = &sim.status().unwrap().notified.clone().unwrap();
    assert!(aborted.iter().any(|k| k.starts_with("aborted/")));
    sim.step();
    assert!(sent(&mut sim).is_empty());
    // A retry is a new attempt: told again from its start.
    sim.operate(Op::Retry).unwrap();
    settle(&mut sim);
    assert_eq!(
        sent(&mut sim),
        ["rollout-started/H", "step-completed/H/1", "paused/H/2"]
    );
}

#[test]
fn subscribing_mid_canary_does_not_replay_the_past() {
    let mut sim = Simulation::new(common::rollout(STEPS));
    settle(&mut sim);
    release(&mut sim, "backend:2");
    assert!(
        sim.status().unwrap().notified.is_none(),
        "nothing recorded while nobody listens"
    );
    sim.notifications = Some(Vec::new());
    sim.step();
    assert!(sent(&mut sim).is_empty());
    assert_eq!(sim.status().unwrap().notified.as_ref().unwrap().len(), 3);
    promoted_to_the_second_pause(&mut sim);
}

#[test]
fn a_failed_analysis_names_its_failing_metrics() {
    let mut sim = Simulation::new(common::rollout(STEPS));
    settle(&mut sim);
    release(&mut sim, "backend:2");
    let mut status = sim.status().unwrap().clone();
    status.notified = Some(Vec::new());
    let hash = status.current_pod_hash.clone().unwrap();
    let metric = |name: &str, phase, dry_run| MetricResult {
        name: name.into(),
        phase,
        dry_run,
        ..Default::default()
    };
    status.analysis_runs = vec![AnalysisRunStatus {
        name: "step-2".into(),
        pod_template_hash: hash,
        phase: AnalysisPhase::Failed,
        message: Some("error-rate failed 3 times".into()),
        metrics: vec![
            metric("error-rate", AnalysisPhase::Failed, false),
            metric("latency", AnalysisPhase::Successful, false),
            metric("experimental", AnalysisPhase::Failed, true),
        ],
        ..Default::default()
    }];
    sim.rollout.status = Some(status.clone());
    let now = sim.world.now;
    let plan = validate(&sim.rollout.spec).ok();
    let found: Vec<Occurrence> = due(&sim.rollout, plan.as_ref(), &mut status, now)
        .into_iter()
        .filter(|o| o.trigger == Trigger::AnalysisFailed)
        .collect();
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .summary
            .starts_with("analysis step-2 Failed (error-rate): error-rate failed 3 times"),
        "{}",
        found[0].summary
    );
    assert_eq!(
        occurrences(&sim.rollout, plan.as_ref(), &status, now).len(),
        4,
        "started, step 1, paused, failed"
    );
}
