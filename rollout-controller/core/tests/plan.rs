//! `plan`: the timeline from the controller's own decision.

use std::collections::BTreeMap;

use rollout_core::plan::plan;
use rollout_core::types::AnalysisTemplate;

mod common;
use common::rollout;

fn templates() -> BTreeMap<String, rollout_core::types::AnalysisTemplateSpec> {
    let t: AnalysisTemplate = serde_yaml::from_str(
        r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: errors}
spec:
  args: [{name: hash}]
  metrics:
    - name: error-rate
      interval: 30s
      count: 4
      failureLimit: 1
      successCondition: result[0] < 0.01
      provider:
        prometheus:
          address: http://prometheus:9090
          query: sum(rate(errors{hash="{{args.hash}}"}[1m]))
"#,
    )
    .unwrap();
    BTreeMap::from([("errors".to_string(), t.spec)])
}

const GATED: &str = "[{setWeight: 10}, {pause: {duration: 2m}}, {analysis: {templates: [{templateName: errors}], args: [{name: hash, valueFrom: {podTemplateHashValue: Latest}}]}}, {setWeight: 50}, {pause: {}}]";

#[test]
fn the_timeline_of_a_gated_canary() {
    let t = plan(&rollout(GATED), &templates(), &BTreeMap::new()).unwrap();
    let rows: Vec<(usize, &str, u64, i32, i32, bool)> = t
        .steps
        .iter()
        .map(|s| {
            (
                s.step,
                s.description.as_str(),
                s.completed_after_seconds,
                s.canary_weight,
                s.canary_replicas,
                s.waits_for_promote,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, "setWeight 10", 0, 10, 1, false),
            (2, "pause 2m", 120, 10, 1, false),
            // Four measurements 30s apart, the first when the gate starts.
            (3, "analysis errors", 210, 10, 1, false),
            (4, "setWeight 50", 210, 50, 3, false),
            (5, "pause until promoted", 210, 50, 3, true),
        ]
    );
    assert!(t.steps.iter().all(|s| s.stable_replicas == 5));
    assert_eq!(t.min_duration_seconds, 210);
    assert_eq!(t.manual_promotions, 1);

    let gate = &t.gates[0];
    assert_eq!((gate.run.as_str(), gate.step), ("step-2", 3));
    assert_eq!(
        gate.metrics[0].query,
        r#"sum(rate(errors{hash="<canary-hash>"}[1m]))"#
    );
    // failureLimit 1: the second failed measurement (30s after the first)
    // aborts, and the same reconcile puts all traffic back on stable.
    assert_eq!(gate.worst_case_to_stable_seconds, Some(30));
}

#[test]
fn limits_and_delays_change_the_timeline() {
    let mut templates = templates();
    let metric = &mut templates.get_mut("errors").unwrap().metrics[0];
    metric.initial_delay = Some("1m".into());
    metric.failure_limit = Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2));
    let t = plan(&rollout(GATED), &templates, &BTreeMap::new()).unwrap();
    // 2m pause + 1m delay + 3 × 30s between the four measurements.
    assert_eq!(t.steps[2].completed_after_seconds, 120 + 60 + 90);
    // From the gate's start: the 1m delay, then three failures 30s apart.
    assert_eq!(t.gates[0].worst_case_to_stable_seconds, Some(60 + 60));
    assert_eq!(t.gates[0].metrics[0].initial_delay.as_deref(), Some("1m"));
}

#[test]
fn background_analysis_is_a_gate_from_its_starting_step() {
    let mut r = rollout(
        "[{setWeight: 20}, {pause: {duration: 1m}}, {setWeight: 60}, {pause: {duration: 1m}}]",
    );
    r.spec.strategy.canary.as_mut().unwrap().analysis = Some(
        serde_yaml::from_str(
            "{templates: [{templateName: errors}], startingStep: 2, args: [{name: hash, value: x}]}",
        )
        .unwrap(),
    );
    let t = plan(&r, &templates(), &BTreeMap::new()).unwrap();
    assert_eq!(t.min_duration_seconds, 120);
    let gate = &t.gates[0];
    assert_eq!((gate.run.as_str(), gate.step), ("background", 3));
    assert_eq!(gate.worst_case_to_stable_seconds, Some(30));

    // Starting at the last step, an untimed pause promoted at once: the
    // rollout completes before the gate could fail; said, not an error.
    let mut r = rollout("[{setWeight: 25}, {pause: {}}]");
    r.spec.strategy.canary.as_mut().unwrap().analysis = Some(
        serde_yaml::from_str(
            "{templates: [{templateName: errors}], startingStep: 1, args: [{name: hash, value: x}]}",
        )
        .unwrap(),
    );
    let t = plan(&r, &templates(), &BTreeMap::new()).unwrap();
    assert_eq!(t.gates[0].worst_case_to_stable_seconds, None);
}

#[test]
fn invalid_specs_and_missing_templates_get_the_controllers_messages() {
    let errors = plan(
        &rollout("[{setWeight: 120}, {pause: {duration: soon}}]"),
        &templates(),
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("spec.strategy.canary.steps[0]: setWeight must be between 0 and 100"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("spec.strategy.canary.steps[1]: pause.duration"),
        "{errors:?}"
    );

    let errors = plan(&rollout(GATED), &BTreeMap::new(), &BTreeMap::new()).unwrap_err();
    assert_eq!(
        errors,
        [
            "spec.strategy.canary.steps[2].analysis.templates[0]: AnalysisTemplate \"errors\" not found"
        ]
    );
}
