//! The canary decision: a pure function from what is observed to what to do.
//!
//! `decide` takes the Rollout (spec and status), the ReplicaSets it owns,
//! its two Services, its Ingress and the time, and returns the actions to
//! take and the status to write. It holds no state: everything it needs to
//! resume after a restart is in the Rollout status or observable, and a
//! settled Rollout yields no actions and an unchanged status.
//!
//! Ordering rules that keep traffic safe:
//! - a ReplicaSet is scaled up before traffic moves to it, and traffic moves
//!   away from it before it is scaled down;
//! - a Service is pointed at a ReplicaSet only once that ReplicaSet is fully
//!   available;
//! - a step counts as reached only when the observed Ingress already carries
//!   its weights — and, when AWS is watched, the ALB shows them too — so
//!   nothing advances on a write that has not landed;
//! - old ReplicaSets are scaled down only after the weights that route away
//!   from them are observed, and after their scale-down delay;
//! - an analysis gate passes only on a Successful run for this canary; a
//!   failed one aborts, an inconclusive one pauses for a human.
//!
//! Measurements are taken by the glue before `decide` (the metrics due are
//! read from the status this function wrote) and handed in with the world.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::alb::{self, ForwardWeights};
use crate::analysis::{self, ArgContext, Metric};
use crate::types::{
    AlbStatus, AnalysisPhase, CanaryStatus, Condition, PauseCondition, Phase, Rollout,
    RolloutStatus, TrafficWeights, WeightDestination,
};
use crate::validate::{BACKGROUND, Plan, StepKind, validate};
use crate::world::{PodView, ReplicaSetView, ServiceView, World};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create `<rollout>-<hash>` from `spec.template`.
    CreateReplicaSet {
        hash: String,
        replicas: i32,
    },
    ScaleReplicaSet {
        name: String,
        replicas: i32,
    },
    /// Set (or clear) the scale-down-deadline annotation.
    ScheduleScaleDown {
        name: String,
        at: Option<Timestamp>,
    },
    DeleteReplicaSet {
        name: String,
    },
    SetServiceSelector {
        service: String,
        hash: String,
    },
    /// Write the forward action annotation (and the managed-actions marker).
    SetIngressAction {
        ingress: String,
        annotations: BTreeMap<String, String>,
    },
    /// Direct mode: set the listener's or rule's forward weights.
    SetAlbWeights {
        canary_weight: i32,
    },
    /// `spec.restartAt`: evict the pod (the Eviction API honours PDBs); its
    /// ReplicaSet replaces it.
    EvictPod {
        name: String,
    },
}

/// A Kubernetes Event to record: (reason, message).
pub type Note = (String, String);

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub status: RolloutStatus,
    /// When to look again even if nothing changes (a pause or scale-down deadline).
    pub requeue_after: Option<Duration>,
    pub events: Vec<Note>,
}

const PAUSE_REASON: &str = "CanaryPauseStep";
pub const INCONCLUSIVE_REASON: &str = "InconclusiveAnalysisRun";
/// Floor for analysis requeues, so a clock skew cannot spin the loop.
const MIN_REQUEUE: Duration = Duration::from_secs(1);
/// How often to look again while pods are being restarted.
const RESTART_INTERVAL: Duration = Duration::from_secs(5);
/// How often to look at AWS again while the ALB has not applied the weights.
const VERIFY_INTERVAL: Duration = Duration::from_secs(10);

/// The canary weight the Ingress carries (None without ALB routing, or
/// when the annotation is absent or not ours).
pub fn annotated_canary_weight(world: &World, plan: &Plan) -> Option<i32> {
    let alb = plan.alb.as_ref()?;
    let value = world.ingress.as_ref()?.annotations.get(&alb.action_key())?;
    alb::parse_action(value)
        .ok()?
        .weight_of(&plan.canary_service)
}

/// The `spec.restartAt` not carried out yet (`status.restartedAt` records
/// the one that was), compared as times so any RFC 3339 spelling matches.
pub fn pending_restart(
    restart_at: Option<Timestamp>,
    status: Option<&RolloutStatus>,
) -> Option<Timestamp> {
    let done = status
        .and_then(|s| s.restarted_at.as_deref())
        .and_then(|t| t.parse::<Timestamp>().ok());
    restart_at.filter(|at| done != Some(*at))
}

/// The decision for one reconcile.
pub fn decide(rollout: &Rollout, world: &World) -> Decision {
    let before = rollout.status.clone().unwrap_or_default();
    let mut d = Decider {
        name: rollout.metadata.name.clone().unwrap_or_default(),
        meta: &rollout.metadata,
        world,
        status: before.clone(),
        actions: Vec::new(),
        requeue: None,
        events: Vec::new(),
        metrics: BTreeMap::new(),
    };
    d.status.observed_generation = rollout.metadata.generation;
    match validate(&rollout.spec) {
        Err(errors) => d.invalid(&errors.join("; ")),
        Ok(plan) => {
            d.condition("InvalidSpec", false, "Valid", "");
            let hash = crate::hash::pod_template_hash(&rollout.spec.template);
            d.run(&plan, &hash);
            d.restart(&plan);
            let index = d.status.current_step_index.unwrap_or(0);
            d.status.step_display = Some(format!("{index}/{}", plan.steps.len()));
            d.status.selector = crate::hash::selector_string(&rollout.spec.selector);
        }
    }
    if d.status.phase != before.phase {
        let phase = d.status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        let message = d.status.message.clone().unwrap_or_default();
        d.events.push((format!("Rollout{phase}"), message));
    }
    Decision {
        actions: d.actions,
        status: d.status,
        requeue_after: d.requeue,
        events: d.events,
    }
}

struct Decider<'a> {
    name: String,
    meta: &'a ObjectMeta,
    world: &'a World,
    status: RolloutStatus,
    actions: Vec<Action>,
    requeue: Option<Duration>,
    events: Vec<Note>,
    /// Resolved metrics by analysis run name.
    metrics: BTreeMap<String, Vec<Metric>>,
}

/// Where an analysis gate stands.
enum Gate {
    Passed,
    Running,
    Failed(String),
    Inconclusive(String),
}

impl Decider<'_> {
    fn run(&mut self, plan: &Plan, hash: &str) {
        if let Err(message) = self.check_references(plan) {
            self.degraded("ReferenceMissing", &message);
            return;
        }
        self.observe_counts(hash);
        self.observe_weights(plan);
        let n = plan.steps.len() as i32;
        let stable = self.status.stable_rs.clone();
        match stable {
            None => self.first_deploy(plan, hash, n),
            Some(stable) if stable == hash => self.settle(plan, hash, n),
            Some(stable) => {
                if self.rs(&stable).is_none() {
                    self.degraded(
                        "StableMissing",
                        &format!("the stable ReplicaSet {}-{stable} is missing", self.name),
                    );
                    return;
                }
                // Analyses judge a canary; a bad template stops it before it starts.
                let ctx = ArgContext {
                    rollout: Some(self.meta),
                    stable_hash: Some(&stable),
                    latest_hash: Some(hash),
                    secrets: None,
                };
                match analysis::resolve_plan(plan, &self.world.templates, &ctx) {
                    Ok(metrics) => self.metrics = metrics,
                    Err(errors) => {
                        self.degraded("InvalidAnalysis", &errors.join("; "));
                        return;
                    }
                }
                self.canary(plan, &stable, hash, n);
            }
        }
    }

    // ---------------------------------------------------------------------
    // The three situations.

    /// No stable version yet: the first template becomes stable at once.
    fn first_deploy(&mut self, plan: &Plan, hash: &str, n: i32) {
        self.no_progress(hash, n);
        self.ensure_replicas(hash, plan.replicas);
        let ready = self.fully_available(hash, plan.replicas);
        if ready {
            self.point(&plan.stable_service, hash);
            self.point(&plan.canary_service, hash);
        }
        let weights_done = self.ensure_weights(plan, 0);
        if ready && self.services_on(plan, hash, hash) && weights_done {
            self.status.stable_rs = Some(hash.to_string());
            self.status.current_step_index = Some(n);
            self.healthy();
        } else {
            self.progressing("waiting for the first ReplicaSet to become available");
        }
    }

    /// The template is the stable one: steady state, a completed rollout, an
    /// abort retried by reverting, or a rollback (which skips the steps).
    fn settle(&mut self, plan: &Plan, hash: &str, n: i32) {
        if self.status.current_pod_hash.as_deref() != Some(hash)
            && self.status.current_pod_hash.is_some()
        {
            self.events.push((
                "RollbackToStable".into(),
                format!("template reverted to the stable version {hash}"),
            ));
        }
        self.no_progress(hash, n);
        self.ensure_replicas(hash, plan.replicas);
        self.cancel_scale_down(hash);
        if self.fully_available(hash, plan.replicas) {
            self.point(&plan.stable_service, hash);
            self.point(&plan.canary_service, hash);
        }
        let weights_done = self.ensure_weights(plan, 0);
        if weights_done && self.service_hash(&plan.stable_service).as_deref() == Some(hash) {
            self.retire_others(plan, &[hash], plan.scale_down_delay);
        }
        if self.fully_available(hash, plan.replicas)
            && weights_done
            && self.services_on(plan, hash, hash)
        {
            self.healthy();
        } else {
            self.progressing("moving everything back to the stable ReplicaSet");
        }
    }

    /// A new template: walk the canary steps.
    fn canary(&mut self, plan: &Plan, stable: &str, hash: &str, n: i32) {
        if self.status.current_pod_hash.as_deref() != Some(hash) {
            let restarted = self
                .status
                .current_pod_hash
                .as_deref()
                .is_some_and(|h| h != stable);
            self.status.start_revision(hash, 0);
            self.events.push((
                "RolloutUpdated".into(),
                if restarted {
                    format!("template changed mid-rollout: restarting the canary with {hash}")
                } else {
                    format!("canary {hash} started")
                },
            ));
        }
        self.ensure_replicas(stable, plan.replicas);
        self.cancel_scale_down(stable);

        self.record_measurements(hash);
        if self.status.abort {
            self.abort(plan, stable);
            return;
        }
        if self.status.aborted_at.is_some() {
            // `retry` cleared abort: start the steps and the analyses again.
            self.status.start_revision(hash, 0);
            self.events.push((
                "RolloutRetried".into(),
                "retrying the canary from the first step".into(),
            ));
        }
        // Any canary from an earlier template loses its traffic first.
        let weights_now = self.canary_weight_now(plan);
        let canary_service_elsewhere = self
            .service_hash(&plan.canary_service)
            .is_some_and(|h| h != hash && h != stable);
        if canary_service_elsewhere && weights_now.unwrap_or(0) > 0 {
            self.ensure_weights(plan, 0);
            self.progressing("moving traffic off the previous canary");
            return;
        }
        self.retire_others(plan, &[stable, hash], plan.scale_down_delay);

        if self.status.promote_full {
            self.status.current_step_index = Some(n);
        }
        if plan.paused {
            self.status.phase = Some(Phase::Paused);
            self.status.message = Some("paused (spec.paused)".into());
            self.condition("Paused", true, "PausedBySpec", "spec.paused is true");
            return;
        }
        let mut index = self.status.current_step_index.unwrap_or(0).clamp(0, n);
        let background_start = plan
            .background
            .as_ref()
            .map(|a| a.starting_step.unwrap_or(0));
        if background_start.is_some_and(|s| index >= s && index < n)
            && !self.background_analysis(hash)
        {
            if self.status.abort {
                self.abort(plan, stable);
            }
            return;
        }
        while index < n {
            let reached = match &plan.steps[index as usize] {
                StepKind::SetWeight(w) => self.set_weight(plan, hash, *w),
                // Hold the weight of the last setWeight (restart, drift) while
                // pausing or analysing.
                StepKind::Pause(duration) => {
                    self.set_weight(plan, hash, weight_before(plan, index as usize))
                        && self.hold(PAUSE_REASON, *duration, None)
                }
                StepKind::Analysis(_) => {
                    self.set_weight(plan, hash, weight_before(plan, index as usize))
                        && self.step_analysis(index as usize, hash)
                }
            };
            if self.status.abort {
                self.abort(plan, stable);
                return;
            }
            if !reached {
                break;
            }
            index += 1;
            self.events.push((
                "StepCompleted".into(),
                format!("step {index}/{n} completed"),
            ));
        }
        self.status.current_step_index = Some(index);
        if index == n {
            self.promote(plan, stable, hash);
        } else if !self.status.controller_pause {
            self.condition("Paused", false, "Progressing", "");
            self.progressing(&format!("canary at step {}/{n}", index + 1));
        }
    }

    // ---------------------------------------------------------------------
    // Steps.

    /// Gives this revision `weight`% once it has the pods for it: scaled
    /// up before traffic moves, down only after traffic left. Only this
    /// revision may receive the canary's share, so the canary Service
    /// selects it before any weight moves.
    fn set_weight(&mut self, plan: &Plan, hash: &str, weight: i32) -> bool {
        let want = canary_replicas(plan.replicas, weight);
        let shrinking = self.rs(hash).is_some_and(|r| r.replicas > want);
        if !shrinking {
            self.ensure_replicas(hash, want);
        }
        if !self
            .rs(hash)
            .is_some_and(|r| r.replicas >= want && r.available >= want)
        {
            return false;
        }
        if weight > 0 {
            self.point(&plan.canary_service, hash);
            if self.service_hash(&plan.canary_service).as_deref() != Some(hash) {
                return false;
            }
        }
        if !self.ensure_weights(plan, weight) {
            return false;
        }
        if shrinking {
            self.ensure_replicas(hash, want);
            return false;
        }
        true
    }

    /// Holds the rollout with a pause condition until `duration` passes or a
    /// human promotes (removes the pause conditions); true once released.
    fn hold(&mut self, reason: &str, duration: Option<Duration>, why: Option<&str>) -> bool {
        let now = self.world.now;
        // One hold at a time: a new one replaces the condition of another.
        if self.status.controller_pause && self.status.pause_conditions.is_empty() {
            // Promote removed the pause conditions.
            self.status.controller_pause = false;
            self.events
                .push(("Promoted".into(), format!("{} promoted", hold_name(reason))));
            return true;
        }
        let Some(condition) = self
            .status
            .pause_conditions
            .iter()
            .find(|c| c.reason == reason)
        else {
            self.status.controller_pause = true;
            self.status.pause_conditions = vec![PauseCondition {
                reason: reason.into(),
                start_time: now.to_string(),
            }];
            self.paused(duration, why);
            return false;
        };
        if let Some(d) = duration {
            let start: Timestamp = condition.start_time.parse().unwrap_or(now);
            let end = start + SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
            if now >= end {
                self.status.pause_conditions.retain(|c| c.reason != reason);
                self.status.controller_pause = false;
                return true;
            }
            self.requeue_in(end.duration_since(now).unsigned_abs());
        }
        self.paused(duration, why);
        false
    }

    fn paused(&mut self, duration: Option<Duration>, why: Option<&str>) {
        let message = match (why, duration) {
            (Some(why), _) => format!("{why}: promote to continue, or abort"),
            (None, Some(d)) => format!("paused for {}s at a canary step", d.as_secs()),
            (None, None) => "paused at a canary step: waiting for promote".to_string(),
        };
        self.status.phase = Some(Phase::Paused);
        self.condition("Paused", true, PAUSE_REASON, &message);
        self.status.message = Some(message);
    }

    /// All steps done: the canary becomes stable.
    fn promote(&mut self, plan: &Plan, stable: &str, hash: &str) {
        self.status.controller_pause = false;
        self.status.pause_conditions.clear();
        self.ensure_replicas(hash, plan.replicas);
        if !self.fully_available(hash, plan.replicas) {
            self.progressing("scaling the canary up to full size before it becomes stable");
            return;
        }
        self.point(&plan.canary_service, hash);
        self.point(&plan.stable_service, hash);
        if !self.services_on(plan, hash, hash) {
            self.progressing("switching the stable Service to the new ReplicaSet");
            return;
        }
        // Both Services now select the new pods, so any weight split is safe;
        // settle on 0/100 before anything old is scaled down.
        if !self.ensure_weights(plan, 0) {
            self.progressing("resetting the weights to the stable Service");
            return;
        }
        self.status.stable_rs = Some(hash.to_string());
        self.status.promote_full = false;
        self.terminate_runs("the rollout completed");
        self.events.push((
            "RolloutCompleted".into(),
            format!("{hash} is now stable (was {stable})"),
        ));
        self.retire_others(plan, &[hash], plan.scale_down_delay);
        self.healthy();
    }

    fn abort(&mut self, plan: &Plan, stable: &str) {
        let now = self.world.now;
        let aborted_at: Timestamp = match self
            .status
            .aborted_at
            .as_deref()
            .and_then(|t| t.parse().ok())
        {
            Some(t) => t,
            None => {
                self.status.aborted_at = Some(now.to_string());
                self.events.push((
                    "RolloutAborted".into(),
                    "all traffic sent back to stable".into(),
                ));
                now
            }
        };
        self.status.controller_pause = false;
        self.status.pause_conditions.clear();
        self.terminate_runs("the rollout was aborted");
        self.point(&plan.stable_service, stable);
        if self.ensure_weights(plan, 0) {
            let due = aborted_at
                + SignedDuration::try_from(plan.abort_scale_down_delay)
                    .unwrap_or(SignedDuration::MAX);
            // The canary Service may still select the canary, but no traffic
            // reaches it any more.
            self.retire_at(plan, &[stable], due, true);
        }
        self.status.phase = Some(Phase::Degraded);
        let failed = self
            .status
            .analysis_runs
            .iter()
            .find(|r| matches!(r.phase, AnalysisPhase::Failed | AnalysisPhase::Error));
        let cause = failed.map_or(String::new(), |r| {
            format!(
                " after analysis {} failed ({})",
                r.name,
                r.message.as_deref().unwrap_or_default()
            )
        });
        self.status.message = Some(format!(
            "aborted{cause}: traffic is back on the stable version; retry or change the template"
        ));
        self.condition("Paused", false, "Aborted", "");
    }

    // ---------------------------------------------------------------------
    // Analysis.

    /// Adds the measurements just taken to their runs and reassesses them.
    fn record_measurements(&mut self, hash: &str) {
        for taken in &self.world.measurements {
            let Some(metric) = self
                .metrics
                .get(&taken.run)
                .and_then(|ms| ms.iter().find(|m| m.name == taken.metric))
            else {
                continue;
            };
            let Some(run) = self.status.analysis_runs.iter_mut().find(|r| {
                r.name == taken.run
                    && r.pod_template_hash == hash
                    && taken.pod_template_hash == hash
                    && r.phase == AnalysisPhase::Running
            }) else {
                continue;
            };
            if let Some(result) = run.metrics.iter_mut().find(|r| r.name == taken.metric) {
                analysis::record(result, metric, taken.measurement.clone());
            }
            analysis::assess_run(run);
            if run.phase.completed() {
                let note = format!(
                    "analysis {} {:?}{}",
                    run.name,
                    run.phase,
                    run.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
                let reason = format!("AnalysisRun{:?}", run.phase);
                self.events.push((reason, note));
            }
        }
    }

    /// Starts the run `name` for `hash` if it has not started, and reports
    /// where it stands.
    fn gate(&mut self, name: &str, hash: &str) -> Gate {
        let metrics = self.metrics.get(name).cloned().unwrap_or_default();
        let now = self.world.now;
        let existing = self
            .status
            .analysis_runs
            .iter()
            .position(|r| r.name == name && r.pod_template_hash == hash);
        let index = match existing {
            Some(i) => i,
            None => {
                self.status
                    .analysis_runs
                    .push(analysis::new_run(name, hash, &metrics, now));
                self.events.push((
                    "AnalysisRunStarted".into(),
                    format!("analysis {name} started"),
                ));
                self.status.analysis_runs.len() - 1
            }
        };
        let run = &self.status.analysis_runs[index];
        match run.phase {
            AnalysisPhase::Successful => Gate::Passed,
            AnalysisPhase::Failed | AnalysisPhase::Error => Gate::Failed(format!(
                "analysis {name}: {}",
                run.message.as_deref().unwrap_or("failed")
            )),
            AnalysisPhase::Inconclusive => Gate::Inconclusive(format!(
                "analysis {name} inconclusive ({})",
                run.message.as_deref().unwrap_or_default()
            )),
            AnalysisPhase::Pending | AnalysisPhase::Running => {
                let next = run
                    .metrics
                    .iter()
                    .filter_map(|r| {
                        let m = metrics.iter().find(|m| m.name == r.name)?;
                        analysis::next_measurement(run, r, m)
                    })
                    .min();
                if let Some(at) = next {
                    let wait = at.duration_since(now);
                    self.requeue_in(wait.unsigned_abs().max(MIN_REQUEUE));
                }
                Gate::Running
            }
        }
    }

    /// A blocking analysis step: reached when its run succeeds (or a human
    /// promotes past an inconclusive one).
    fn step_analysis(&mut self, index: usize, hash: &str) -> bool {
        match self.gate(&format!("step-{index}"), hash) {
            Gate::Passed => true,
            Gate::Running => {
                self.condition("Paused", false, "Progressing", "");
                self.progressing(&format!("running analysis step-{index}"));
                false
            }
            Gate::Failed(why) => {
                self.fail(&why);
                false
            }
            Gate::Inconclusive(why) => self.hold(INCONCLUSIVE_REASON, None, Some(&why)),
        }
    }

    /// The background analysis: false while it holds the rollout (failed →
    /// abort set; inconclusive → paused). A promote past an inconclusive run
    /// starts a fresh one.
    fn background_analysis(&mut self, hash: &str) -> bool {
        match self.gate(BACKGROUND, hash) {
            Gate::Passed | Gate::Running => true,
            Gate::Failed(why) => {
                self.fail(&why);
                false
            }
            Gate::Inconclusive(why) => {
                if !self.hold(INCONCLUSIVE_REASON, None, Some(&why)) {
                    return false;
                }
                self.status
                    .analysis_runs
                    .retain(|r| !(r.name == BACKGROUND && r.pod_template_hash == hash));
                self.gate(BACKGROUND, hash);
                true
            }
        }
    }

    fn fail(&mut self, why: &str) {
        self.status.abort = true;
        self.events.push(("AnalysisFailed".into(), why.to_string()));
    }

    /// Stops the runs still measuring (Argo marks them Successful, "terminated").
    fn terminate_runs(&mut self, why: &str) {
        for run in &mut self.status.analysis_runs {
            if !run.phase.completed() {
                run.phase = AnalysisPhase::Successful;
                run.message = Some(format!("terminated: {why}"));
            }
        }
    }

    // ---------------------------------------------------------------------
    // Building blocks.

    fn rs(&self, hash: &str) -> Option<&ReplicaSetView> {
        self.world.replica_sets.iter().find(|r| r.hash == hash)
    }

    fn fully_available(&self, hash: &str, replicas: i32) -> bool {
        self.rs(hash)
            .is_some_and(|r| r.replicas == replicas && r.available >= replicas)
    }

    fn ensure_replicas(&mut self, hash: &str, replicas: i32) {
        match self.rs(hash) {
            None => self.actions.push(Action::CreateReplicaSet {
                hash: hash.to_string(),
                replicas,
            }),
            Some(rs) if rs.replicas != replicas => {
                let name = rs.name.clone();
                self.actions
                    .push(Action::ScaleReplicaSet { name, replicas });
            }
            Some(_) => {}
        }
    }

    fn cancel_scale_down(&mut self, hash: &str) {
        if let Some(rs) = self.rs(hash).filter(|r| r.scale_down_at.is_some()) {
            let name = rs.name.clone();
            self.actions
                .push(Action::ScheduleScaleDown { name, at: None });
        }
    }

    fn service(&self, name: &str) -> Option<&ServiceView> {
        [&self.world.stable_service, &self.world.canary_service]
            .into_iter()
            .flatten()
            .find(|s| s.name == name)
    }

    fn service_hash(&self, name: &str) -> Option<String> {
        self.service(name).and_then(|s| s.hash.clone())
    }

    fn services_on(&self, plan: &Plan, stable: &str, canary: &str) -> bool {
        self.service_hash(&plan.stable_service).as_deref() == Some(stable)
            && self.service_hash(&plan.canary_service).as_deref() == Some(canary)
    }

    fn point(&mut self, service: &str, hash: &str) {
        if self.service_hash(service).as_deref() != Some(hash) {
            self.actions.push(Action::SetServiceSelector {
                service: service.to_string(),
                hash: hash.to_string(),
            });
        }
    }

    /// The canary weight the Ingress carries now (None without ALB routing
    /// or when the annotation is absent or not ours).
    fn annotated_canary_weight(&self, plan: &Plan) -> Option<i32> {
        annotated_canary_weight(self.world, plan)
    }

    /// `(canary, stable)` weights AWS shows, when it is watched and readable.
    fn aws_weights(&self) -> Option<(i32, i32)> {
        self.world.alb.as_ref()?.as_ref().ok()?.weights
    }

    fn direct(plan: &Plan) -> bool {
        plan.alb.as_ref().is_some_and(|a| a.direct.is_some())
    }

    /// The canary weight in force: what we set (the annotation, or the ALB
    /// itself in direct mode).
    fn canary_weight_now(&self, plan: &Plan) -> Option<i32> {
        if Self::direct(plan) {
            self.aws_weights().map(|(c, _)| c)
        } else {
            self.annotated_canary_weight(plan)
        }
    }

    /// Writes the weights where they are not yet; true once they are in
    /// force: carried by the Ingress and, when AWS is watched, shown by the
    /// ALB (or no traffic routing at all).
    fn ensure_weights(&mut self, plan: &Plan, canary: i32) -> bool {
        let Some(alb) = &plan.alb else {
            return true;
        };
        let want = (canary, 100 - canary);
        if alb.direct.is_none() && self.annotated_canary_weight(plan) != Some(canary) {
            let ingress = self
                .world
                .ingress
                .as_ref()
                .expect("checked by check_references");
            let weights = ForwardWeights {
                canary_service: plan.canary_service.clone(),
                stable_service: plan.stable_service.clone(),
                port: alb.service_port,
                canary_weight: canary,
            };
            let annotations = alb::annotations(&ingress.annotations, &self.name, alb, &weights);
            self.actions.push(Action::SetIngressAction {
                ingress: ingress.name.clone(),
                annotations,
            });
            return false;
        }
        let note = match &self.world.alb {
            None if alb.direct.is_some() => "direct mode needs the ELBv2 API".to_string(),
            None => return true,
            Some(Ok(o)) if o.weights == Some(want) => return true,
            Some(Ok(_)) if alb.direct.is_some() => {
                self.actions.push(Action::SetAlbWeights {
                    canary_weight: canary,
                });
                return false;
            }
            Some(Ok(o)) => match o.weights {
                Some((c, s)) => format!(
                    "waiting for the ALB to apply weights {}/{} (it shows {c}/{s})",
                    want.0, want.1
                ),
                None => "waiting for the ALB to forward to both target groups".to_string(),
            },
            Some(Err(e)) => format!("cannot verify the ALB weights: {e}"),
        };
        if let Some(status) = &mut self.status.alb {
            status.message = Some(note);
        }
        self.requeue_in(VERIFY_INTERVAL);
        false
    }

    /// Records the weights in force, and what AWS shows, in the status.
    fn observe_weights(&mut self, plan: &Plan) {
        let observed = self.canary_weight_now(plan);
        let verified = self
            .world
            .alb
            .as_ref()
            .map(|_| observed.is_some_and(|w| self.aws_weights() == Some((w, 100 - w))));
        self.status.canary = CanaryStatus {
            weights: observed.map(|w| TrafficWeights {
                canary: WeightDestination {
                    weight: w,
                    service_name: Some(plan.canary_service.clone()),
                    pod_template_hash: self.service_hash(&plan.canary_service),
                },
                stable: WeightDestination {
                    weight: 100 - w,
                    service_name: Some(plan.stable_service.clone()),
                    pod_template_hash: self.service_hash(&plan.stable_service),
                },
                verified,
            }),
        };
        self.status.alb = self.world.alb.as_ref().map(|o| match o {
            Ok(o) => AlbStatus {
                load_balancer: o.load_balancer.clone(),
                stable_target_group: o.stable.clone(),
                canary_target_group: o.canary.clone(),
                rule: o.rule.clone(),
                message: None,
            },
            Err(e) => AlbStatus {
                message: Some(e.clone()),
                ..Default::default()
            },
        });
    }

    /// Schedules every ReplicaSet not in `keep` for scale-down after `delay`.
    fn retire_others(&mut self, plan: &Plan, keep: &[&str], delay: Duration) {
        let due = self.world.now + SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
        self.retire_at(plan, keep, due, false);
    }

    /// Scales down every ReplicaSet not in `keep` at `due`, except one that
    /// still gets traffic (unless `force`), and prunes old history.
    fn retire_at(&mut self, plan: &Plan, keep: &[&str], due: Timestamp, force: bool) {
        let now = self.world.now;
        let mut idle: Vec<&ReplicaSetView> = Vec::new();
        for rs in &self.world.replica_sets {
            if keep.contains(&rs.hash.as_str()) {
                continue;
            }
            // Never scale down what still gets traffic: the stable Service's
            // pods, or the canary Service's while it has weight.
            let selects =
                |service: &str| self.service_hash(service).as_deref() == Some(rs.hash.as_str());
            // Unknown weights count as traffic; so does a weight AWS still shows.
            let canary_traffic = plan.alb.is_none()
                || self.canary_weight_now(plan).unwrap_or(100) > 0
                || self.aws_weights().is_some_and(|(c, _)| c > 0);
            let selected = !force
                && (selects(&plan.stable_service)
                    || (selects(&plan.canary_service) && canary_traffic));
            if rs.replicas == 0 {
                idle.push(rs);
                continue;
            }
            if selected {
                continue;
            }
            match rs.scale_down_at {
                None => self.actions.push(Action::ScheduleScaleDown {
                    name: rs.name.clone(),
                    at: Some(due),
                }),
                Some(at) if at <= now => {
                    self.actions.push(Action::ScaleReplicaSet {
                        name: rs.name.clone(),
                        replicas: 0,
                    });
                    self.actions.push(Action::ScheduleScaleDown {
                        name: rs.name.clone(),
                        at: None,
                    });
                }
                Some(at) => self.requeue_in(at.duration_since(now).unsigned_abs()),
            }
        }
        // Keep the newest `revisionHistoryLimit` scaled-down ReplicaSets.
        idle.sort_by_key(|r| std::cmp::Reverse(r.created));
        for rs in idle.into_iter().skip(plan.revision_history_limit as usize) {
            self.actions.push(Action::DeleteReplicaSet {
                name: rs.name.clone(),
            });
        }
    }

    fn check_references(&self, plan: &Plan) -> Result<(), String> {
        for (field, name) in [
            ("canaryService", &plan.canary_service),
            ("stableService", &plan.stable_service),
        ] {
            if self.service(name).is_none() {
                return Err(format!("{field} {name:?} not found"));
            }
        }
        if let Some(alb) = plan.alb.as_ref().filter(|a| a.direct.is_none()) {
            match &self.world.ingress {
                None => return Err(format!("ingress {:?} not found", alb.ingress)),
                Some(i) if !i.routes_root_service => {
                    return Err(format!(
                        "ingress {:?} has no rule backed by service {:?} with port name \"use-annotation\"",
                        alb.ingress, alb.root_service
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn observe_counts(&mut self, hash: &str) {
        let sum =
            |f: fn(&ReplicaSetView) -> i32| self.world.replica_sets.iter().map(f).sum::<i32>();
        self.status.replicas = Some(sum(|r| r.replicas));
        self.status.ready_replicas = Some(sum(|r| r.ready));
        self.status.available_replicas = Some(sum(|r| r.available));
        self.status.updated_replicas = Some(self.rs(hash).map_or(0, |r| r.replicas));
    }

    /// The first or the stable template has no canary progress: whatever
    /// another revision left, or a hand-made patch set, goes.
    fn no_progress(&mut self, hash: &str, n: i32) {
        if self.status.current_pod_hash.as_deref() != Some(hash) || self.status.holds_progress() {
            self.status.start_revision(hash, n);
        }
        self.status.current_step_index = Some(n);
    }

    /// `spec.restartAt`: one pod older than it at a time, and only while
    /// every ReplicaSet has all its pods available and nothing else is being
    /// changed; done (status.restartedAt) when no older pod is left.
    fn restart(&mut self, plan: &Plan) {
        let Some(at) = pending_restart(plan.restart_at, Some(&self.status)) else {
            return;
        };
        let at_text = at.to_string();
        let now = self.world.now;
        if at > now {
            self.requeue_in(Duration::try_from(at.duration_since(now)).unwrap_or(MIN_REQUEUE));
            return;
        }
        let mut old: Vec<&PodView> = self.world.pods.iter().filter(|p| p.created < at).collect();
        if old.is_empty() {
            self.status.restarted_at = Some(at_text.clone());
            self.events.push((
                "RolloutRestarted".into(),
                format!("every pod created before {at_text} restarted"),
            ));
            return;
        }
        let settled = self.actions.is_empty()
            && self.world.pods.iter().all(|p| !p.terminating)
            && self
                .world
                .replica_sets
                .iter()
                .all(|r| r.available >= r.replicas);
        if settled {
            old.sort_by_key(|p| p.created);
            let pod = old[0].name.clone();
            self.events.push((
                "RestartingPod".into(),
                format!("evicting {pod} (created before {at_text})"),
            ));
            self.actions.push(Action::EvictPod { name: pod });
        }
        self.requeue_in(RESTART_INTERVAL);
    }

    fn requeue_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn healthy(&mut self) {
        self.status.phase = Some(Phase::Healthy);
        self.status.message = None;
        self.condition("Paused", false, "Healthy", "");
        self.condition("Healthy", true, "Healthy", "");
    }

    fn progressing(&mut self, message: &str) {
        self.status.phase = Some(Phase::Progressing);
        self.status.message = Some(message.to_string());
        self.condition("Healthy", false, "Progressing", message);
    }

    fn degraded(&mut self, reason: &str, message: &str) {
        self.status.phase = Some(Phase::Degraded);
        self.status.message = Some(format!("{reason}: {message}"));
        self.condition("Healthy", false, reason, message);
    }

    fn invalid(&mut self, message: &str) {
        self.condition("InvalidSpec", true, "InvalidSpec", message);
        self.degraded("InvalidSpec", message);
    }

    /// Sets a condition, keeping its transition time when the status is unchanged.
    fn condition(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let status = if status { "True" } else { "False" };
        let existing = self.status.conditions.iter_mut().find(|c| c.type_ == type_);
        // An absent False condition stays absent: fewer writes for the common case.
        if existing.is_none() && status == "False" {
            return;
        }
        let now = self.world.now.to_string();
        let new = Condition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: (!message.is_empty()).then(|| message.to_string()),
            last_transition_time: Some(now),
        };
        match existing {
            Some(c) if c.status == new.status => {
                c.reason = new.reason;
                c.message = new.message;
            }
            Some(c) => *c = new,
            None => self.status.conditions.push(new),
        }
    }
}

/// The weight in force when step `index` starts: the last setWeight before it.
pub fn weight_before(plan: &Plan, index: usize) -> i32 {
    plan.steps[..index]
        .iter()
        .rev()
        .find_map(|s| match s {
            StepKind::SetWeight(w) => Some(*w),
            _ => None,
        })
        .unwrap_or(0)
}

/// Canary pods for a weight: `ceil(replicas × weight / 100)`, at least 1
/// while the weight is above 0.
pub fn canary_replicas(replicas: i32, weight: i32) -> i32 {
    if weight <= 0 {
        return 0;
    }
    ((replicas * weight + 99) / 100).max(1)
}

fn hold_name(reason: &str) -> &'static str {
    match reason {
        INCONCLUSIVE_REASON => "inconclusive analysis",
        _ => "pause step",
    }
}
