//! The timeline a Rollout will follow, found by running the controller's
//! own decision on a simulated cluster (`simulate`), not by a second model:
//! a deploy of a new template with every analysis passing (the minimum
//! duration, each pause that waits for a person promoted at once), then,
//! for each analysis gate, the same deploy with that gate failing (how long
//! until the canary is aborted and all traffic is back on stable). The
//! traffic gates wait as the controller would without the ELBv2 API (the
//! settle and drain times, from the Ingress when it is given).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;
use serde::Serialize;

use crate::analysis::{self, ArgContext, Metric};
use crate::decide::{INCONCLUSIVE_REASON, canary_replicas_after, stable_replicas, weight_before};
use crate::display::{describe, human};
use crate::simulate::Simulation;
use crate::types::{AnalysisPhase, AnalysisTemplateSpec, Phase, Rollout, WorkloadScaleDown};
use crate::validate::{Plan, StepKind, validate};
use crate::world::{Observed, WorkloadView};

/// Where the simulation gives up: a rollout that does not finish within a
/// year of simulated time, or within this many reconciles, is stuck.
const MAX_RECONCILES: usize = 10_000;
const MAX_SIMULATED: SignedDuration = SignedDuration::from_hours(24 * 365);

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub replicas: i32,
    pub steps: Vec<StepOutcome>,
    /// The analysis gates with their resolved metrics.
    pub gates: Vec<Gate>,
    /// From the new template to Healthy, every analysis passing and every
    /// indefinite pause promoted at once.
    pub min_duration_seconds: u64,
    /// Pauses that wait for `promote`.
    pub manual_promotions: usize,
    /// From the last step to Healthy: all traffic to the canary, the stable
    /// Service switched and its targets healthy, the traffic back.
    pub promotion_seconds: u64,
    /// What else shapes the rollout: the progress deadline, pod arithmetic,
    /// role metadata, the Deployment the template comes from.
    pub notes: Vec<String>,
}

/// The state right after a step completed.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepOutcome {
    /// 1-based, as `status.stepDisplay`.
    pub step: usize,
    pub description: String,
    /// Seconds from the new template until the step completed.
    pub completed_after_seconds: u64,
    pub canary_weight: i32,
    pub canary_replicas: i32,
    pub stable_replicas: i32,
    pub waits_for_promote: bool,
    /// Of the time before it completed, how much was spent at traffic
    /// gates (waiting for the ALB to serve the pods).
    pub traffic_gate_seconds: u64,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// `step-<i>` or `background`.
    pub run: String,
    /// 1-based step the gate is (or, for background analysis, starts at).
    pub step: usize,
    pub metrics: Vec<GateMetric>,
    /// From the gate's start (its run begins; `initialDelay` included) to all
    /// traffic back on stable, when every measurement of this gate fails.
    /// None: with every pause promoted at once, the rollout completes
    /// before the gate could fail (a background analysis starting late).
    pub worst_case_to_stable_seconds: Option<u64>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GateMetric {
    pub name: String,
    pub query: String,
    pub interval: Option<String>,
    pub initial_delay: Option<String>,
    pub count: Option<i32>,
    pub success_condition: Option<String>,
    pub failure_condition: Option<String>,
    pub failure_limit: i32,
    pub consecutive_error_limit: i32,
    /// Measured and recorded, never failing the gate.
    pub dry_run: bool,
}

/// The hash the simulated canary's pods get: any value different from the
/// stable one works, a fixed one keeps the printed queries stable.
const CANARY_HASH: &str = "<canary-hash>";
const STABLE_HASH: &str = "<stable-hash>";

/// Validates the Rollout and its templates exactly as the controller does,
/// then simulates. Errors are the controller's own messages, with paths.
/// `ingress`: the annotations of the Rollout's Ingress, when known (the
/// traffic gates' timing defaults from them).
pub fn plan(
    rollout: &Rollout,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
    ingress: &BTreeMap<String, String>,
) -> Result<Timeline, Vec<String>> {
    let spec_plan = validate(&rollout.spec)?;
    let alb = Observed::placeholder();
    let ctx = ArgContext {
        rollout: Some(&rollout.metadata),
        stable_hash: Some(STABLE_HASH),
        latest_hash: Some(CANARY_HASH),
        secrets: None,
        alb: Some(&alb),
    };
    let resolved = analysis::resolve_plan(&spec_plan, templates, &ctx)?;

    let mut happy = deployed(rollout, templates, ingress)?;
    let run = walk(&mut happy, &spec_plan, None)?;
    let mut gates = Vec::new();
    for (name, _, analysis) in spec_plan.analyses() {
        let step = match name.strip_prefix("step-") {
            Some(i) => i.parse::<usize>().map_err(|e| vec![e.to_string()])? + 1,
            None => analysis.starting_step.unwrap_or(0) as usize + 1,
        };
        let mut failing = deployed(rollout, templates, ingress)?;
        let failed = walk(&mut failing, &spec_plan, Some(&name))?;
        gates.push(Gate {
            step,
            metrics: resolved[&name].iter().map(gate_metric).collect(),
            worst_case_to_stable_seconds: failed.detection.map(|d| d.as_secs()),
            run: name,
        });
    }
    let last_step = run.steps.last().map_or(0, |s| s.completed_after_seconds);
    let promotion_seconds = run.duration.as_secs().saturating_sub(last_step);
    Ok(Timeline {
        replicas: spec_plan.replicas,
        steps: run.steps,
        gates,
        min_duration_seconds: run.duration.as_secs(),
        manual_promotions: run.promotions,
        promotion_seconds,
        notes: notes(&spec_plan, ingress),
    })
}

/// The settings besides the steps, as one line each.
fn notes(plan: &Plan, ingress: &BTreeMap<String, String>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(w) = &plan.workload {
        let scale_down = match w.scale_down {
            WorkloadScaleDown::Never => "left as it is (scaleDown never)",
            WorkloadScaleDown::OnSuccess => {
                "scaled to 0 once the Rollout is Healthy (scaleDown onsuccess)"
            }
            WorkloadScaleDown::Progressively => {
                "scaled down as the first ReplicaSet becomes available, back up if it fails (scaleDown progressively)"
            }
        };
        notes.push(format!(
            "Pod template from Deployment {} (workloadRef); its own pods are {scale_down}.",
            w.deployment
        ));
    }
    let deadline = human(plan.progress_deadline);
    notes.push(if plan.progress_deadline_abort {
        format!("Progress deadline {deadline}: an update without progress that long (pauses not counted) is Degraded and a canary aborted.")
    } else {
        format!("Progress deadline {deadline}: an update without progress that long (pauses not counted) is Degraded; it carries on if progress resumes.")
    });
    if plan.rollback_window > 0 {
        notes.push(format!(
            "Rollback window {}: going back to one of the last {} revisions (the stable one counted, its ReplicaSet still kept) skips the steps.",
            plan.rollback_window, plan.rollback_window
        ));
    }
    if let Some(limit) = plan.scale_down_revision_limit {
        notes.push(format!(
            "scaleDownDelayRevisionLimit {limit}: at most {limit} old ReplicaSet(s) wait out the scale-down delay; older ones go as soon as their pods left the load balancer."
        ));
    }
    if plan.min_ready_seconds > 0 {
        notes.push(format!(
            "minReadySeconds {}: a pod counts as available that long after it is ready.",
            plan.min_ready_seconds
        ));
    }
    let services = match (plan.stable_service.is_empty(), plan.canary_service.is_empty()) {
        (true, true) => {
            "no Service is named: one of yours selecting the app's pods reaches both revisions in that share".to_string()
        }
        _ => format!(
            "{} selects its role's pods",
            plan.services().collect::<Vec<_>>().join(" and ")
        ),
    };
    notes.push(match plan.alb {
        None => format!(
            "No traffic routing: the weight is the canary's share of the {} pods; moves keep at most {} extra and {} unavailable (maxSurge, maxUnavailable); {services}.",
            plan.replicas, plan.max_surge, plan.max_unavailable
        ),
        Some(_) if plan.dynamic_stable_scale => "Traffic routing with dynamicStableScale: the stable keeps the pods for its share of the traffic (at least one), shrinking only once the ALB applies the canary's higher weight and growing back before weight returns to it (an abort brings it to full size first). Its pods get a preStop sleep of the settle time below (where a container has no hook of its own), so a pod deleted while the ALB still sends it requests serves them.".into(),
        Some(_) => "Traffic routing: the stable keeps all its pods until the canary is promoted (maxSurge/maxUnavailable do not apply).".into(),
    });
    if let Some(pp) = &plan.ping_pong {
        notes.push(format!(
            "pingPong: {} and {} take the stable and canary roles in turn; at promotion all traffic moves to the canary's, which becomes the stable Service.",
            pp.ping_service, pp.pong_service
        ));
    }
    if let Some(alb) = plan.alb.as_ref().filter(|a| !a.managed_routes.is_empty()) {
        notes.push(format!(
            "Header routes {} (in that precedence): a setHeaderRoute sends the requests it matches to the canary's target group whatever the weights, through a rule before each path of {} (the ALB compares values case-insensitively, * and ? as wildcards). A route is added once the canary's group serves, and removed at promotion, at abort, and before the canary's Service or pods change.",
            alb.managed_routes.join(", "),
            alb.root_service
        ));
    }
    if let Some(sticky) = plan.alb.as_ref().and_then(|a| a.stickiness) {
        notes.push(format!(
            "stickinessConfig {}: a Service is re-pointed only that long after the weights last changed (sticky clients ignore weights).",
            human(sticky)
        ));
    }
    if let Some(alb) = &plan.alb {
        let (settle, drain) = (
            alb.gates.settle(alb, ingress),
            alb.gates.drain(alb, ingress),
        );
        notes.push(format!(
            "Traffic gates: weight moves onto a target group only once its pods are healthy in it, and a Service's selector changes only while its group has no weight. With the ELBv2 API the controller asks DescribeTargetHealth; without (as timed here) it waits {} after the pods are ready (less where they carry the LB controller's readiness gate for the group: until it passes) and after weight left a group. Old pods are scaled down once they left every target group (without the ELBv2 API: {} after, settle + deregistration delay). A gate still waiting after {} aborts the canary.",
            human(settle),
            human(settle + drain),
            human(alb.gates.timeout)
        ));
    }
    for (role, m) in [
        ("Canary", &plan.canary_metadata),
        ("Stable", &plan.stable_metadata),
    ] {
        if !m.is_empty() {
            let pairs: Vec<String> = m
                .labels
                .iter()
                .map(|(k, v)| format!("label {k}={v}"))
                .chain(
                    m.annotations
                        .iter()
                        .map(|(k, v)| format!("annotation {k}={v}")),
                )
                .collect();
            notes.push(format!("{role} pods carry {}.", pairs.join(", ")));
        }
    }
    notes
}

fn gate_metric(m: &Metric) -> GateMetric {
    GateMetric {
        name: m.name.clone(),
        // As logged: Secret-backed arguments masked.
        query: m.display_query.clone(),
        interval: m.interval.map(human),
        initial_delay: (!m.initial_delay.is_zero()).then(|| human(m.initial_delay)),
        count: m.count,
        success_condition: m.success_condition.clone(),
        failure_condition: m.failure_condition.clone(),
        failure_limit: m.failure_limit,
        consecutive_error_limit: m.consecutive_error_limit,
        dry_run: m.dry_run,
    }
}

/// The Rollout deployed and settled on its current template; the template
/// then changes, which starts the canary the plan is about.
fn deployed(
    rollout: &Rollout,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
    ingress: &BTreeMap<String, String>,
) -> Result<Simulation, Vec<String>> {
    let mut r = rollout.clone();
    r.status = None;
    r.metadata.generation = Some(1);
    let mut sim = Simulation::new(r);
    sim.world.templates = templates.clone();
    for i in &mut sim.world.ingresses {
        i.annotations = ingress.clone();
    }
    // A stand-in for the Deployment: the plan is about its template changing.
    sim.world.workload = rollout.spec.workload_ref.as_ref().map(|w| WorkloadView {
        name: w.name.clone(),
        replicas: rollout.spec.replicas.unwrap_or(1),
        selector: rollout.spec.selector.clone(),
        template: Default::default(),
    });
    // An analysis reading the ALB's dimensions runs with the ALB watched
    // (the simulated LB controller applies the weights).
    let reads_alb = templates.values().flat_map(|t| &t.args).any(|a| {
        a.value_from
            .as_ref()
            .is_some_and(|f| f.aws_dimension.is_some())
    });
    if reads_alb {
        sim.world.alb = Some(Ok(Observed::placeholder()));
    }
    sim.verdict = Some(AnalysisPhase::Successful);
    sim.settle()
        .ok_or_else(|| vec!["the first deploy does not settle".to_string()])?;
    let template = match sim.world.workload.as_mut() {
        Some(deployment) => &mut deployment.template,
        None => &mut sim.rollout.spec.template,
    };
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert("gantry.dev/plan".into(), "new-revision".into());
    sim.rollout.metadata.generation = Some(2);
    Ok(sim)
}

struct Walk {
    steps: Vec<StepOutcome>,
    duration: Duration,
    promotions: usize,
    /// With a failing gate: from its start to 100% stable.
    detection: Option<Duration>,
}

/// Reconciles, advancing the clock as the decision asks, until the rollout
/// is Healthy (or, with `failing`, aborted with all traffic on stable).
fn walk(sim: &mut Simulation, plan: &Plan, failing: Option<&str>) -> Result<Walk, Vec<String>> {
    let start = sim.world.now;
    let canary = sim.hash();
    let mut walk = Walk {
        steps: Vec::new(),
        duration: Duration::ZERO,
        promotions: 0,
        detection: None,
    };
    let mut failing_since = None;
    let mut completed = 0;
    // Time at traffic gates since the last step completed.
    let mut gated = Duration::ZERO;
    let mut last = sim.world.now;
    for _ in 0..MAX_RECONCILES {
        let before = sim.rollout.status.clone();
        let waiting = before.as_ref().is_some_and(|s| {
            s.traffic_gates
                .iter()
                .any(|g| g.kind != crate::types::GateKind::TargetsDrained)
        });
        if waiting {
            gated += Duration::try_from(sim.world.now.duration_since(last)).unwrap_or_default();
        }
        last = sim.world.now;
        let d = sim.step();
        if let Some(v) = sim.violations.first() {
            return Err(vec![format!(
                "the controller would {v}: please report this"
            )]);
        }
        let status = sim.status().cloned().unwrap_or_default();
        let elapsed = Duration::try_from(sim.world.now.duration_since(start)).unwrap_or_default();
        let index = status.current_step_index.unwrap_or(0).max(0) as usize;
        // Several steps can complete in one reconcile; each one's split is
        // the controller's own arithmetic for it.
        while completed < index.min(plan.steps.len()) {
            let weight = weight_before(plan, completed + 1);
            walk.steps.push(StepOutcome {
                step: completed + 1,
                description: describe(&plan.steps[completed]),
                completed_after_seconds: elapsed.as_secs(),
                canary_weight: weight,
                canary_replicas: canary_replicas_after(plan, completed),
                stable_replicas: stable_replicas(plan, weight),
                waits_for_promote: matches!(plan.steps[completed], StepKind::Pause(None)),
                traffic_gate_seconds: std::mem::take(&mut gated).as_secs(),
            });
            completed += 1;
        }

        if let Some(run) = failing {
            let running = status
                .analysis_runs
                .iter()
                .any(|r| r.name == run && r.phase == AnalysisPhase::Running);
            if running && failing_since.is_none() {
                failing_since = Some(sim.world.now);
                sim.verdict = Some(AnalysisPhase::Failed);
            }
            if status.phase == Some(Phase::Degraded) && sim.canary_weight().unwrap_or(0) == 0 {
                let since = failing_since.unwrap_or(sim.world.now);
                walk.detection = Duration::try_from(sim.world.now.duration_since(since)).ok();
                return Ok(walk);
            }
        }
        // Completed: with a failing gate, before it could stop the rollout.
        if status.phase == Some(Phase::Healthy)
            && status.stable_rs.as_deref() == Some(canary.as_str())
        {
            walk.duration = elapsed;
            return Ok(walk);
        }
        if status.phase == Some(Phase::Degraded) {
            return Err(vec![format!(
                "the simulated rollout was aborted: {}",
                status.message.unwrap_or_default()
            )]);
        }

        let settled = d.actions.is_empty() && sim.rollout.status == before;
        if !settled {
            continue;
        }
        if status.phase == Some(Phase::Paused) && waits_for_person(&status, plan, index) {
            walk.promotions += 1;
            sim.promote();
            continue;
        }
        match d.requeue_after {
            Some(after) => {
                sim.advance(SignedDuration::try_from(after).map_err(|e| vec![e.to_string()])?)
            }
            None => {
                return Err(vec![
                    "the simulated rollout stopped progressing".to_string(),
                ]);
            }
        }
        if sim.world.now.duration_since(start) > MAX_SIMULATED {
            break;
        }
    }
    Err(vec![
        "the simulated rollout did not finish within a year".to_string(),
    ])
}

/// A pause only `promote` ends: an indefinite pause step, or an
/// inconclusive analysis.
fn waits_for_person(status: &crate::types::RolloutStatus, plan: &Plan, index: usize) -> bool {
    let indefinite = matches!(plan.steps.get(index), Some(StepKind::Pause(None)));
    indefinite
        || status
            .pause_conditions
            .iter()
            .any(|p| p.reason == INCONCLUSIVE_REASON)
}
