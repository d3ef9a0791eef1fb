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
//!   available, and re-pointed only while its target group carries no
//!   weight (all of it is moved to the other group first);
//! - weight moves onto a target group only once the pods its Service
//!   selects are healthy in it (`targets`);
//! - a step counts as reached only when the observed Ingress already carries
//!   its weights — and, when AWS is watched, the ALB shows them too — so
//!   nothing advances on a write that has not landed;
//! - old ReplicaSets are scaled down only after the weights that route away
//!   from them are observed, after their scale-down delay, and once their
//!   pods have left every target group;
//! - an analysis gate passes only on a Successful run for this canary; a
//!   failed one aborts, an inconclusive one pauses for a human.
//!
//! Measurements are taken by the glue before `decide` (the metrics due are
//! read from the status this function wrote) and handed in with the world.
//!
//! One `impl Decider` per concern: `revisions` (first deploy, settled,
//! promoted, aborted), `steps` (walking a canary's steps), `pauses`,
//! `services` (the stable and canary Services), `traffic` (weights),
//! `routes` (header routes), `dynamic` (`dynamicStableScale`),
//! `gates` (analysis), `targets` (traffic safety at the ALB), `replica_sets` (scaling, scale-down, restarts),
//! `status` (phase, message, conditions, requeues).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use k8s_openapi::api::networking::v1::IngressRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::alb::{self, ForwardWeights};
use crate::analysis::{self, ArgContext, Metric};
use crate::types::{
    AlbStatus, AnalysisPhase, CanaryStatus, Condition, PauseCondition, Phase, PodMetadata, Rollout,
    RolloutStatus, TrafficGate, TrafficWeights, WeightDestination,
};
use crate::validate::{BACKGROUND, PING, PONG, Plan, StepKind, plan_of};

mod basic;
mod deadline;
mod dynamic;
mod gates;
mod metadata;
mod pauses;
mod replica_sets;
mod revisions;
mod routes;
mod services;
mod status;
mod steps;
mod targets;
mod traffic;
mod workload;
use crate::world::{Observed, PodView, ReplicaSetView, ServiceView, World};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create `<rollout>-<hash>` from `spec.template`, its pods carrying
    /// their role's metadata.
    CreateReplicaSet {
        hash: String,
        replicas: i32,
        pod_metadata: PodMetadata,
        /// `dynamicStableScale`: containers without a preStop hook get one
        /// sleeping this long (the pod keeps serving while the ALB
        /// deregisters it), and the pod that much more grace.
        pre_stop: Option<Duration>,
    },
    /// Replace a ReplicaSet's role metadata (`from`) by `to`, on its pod
    /// template and on its running pods.
    SetPodMetadata {
        name: String,
        hash: String,
        from: PodMetadata,
        to: PodMetadata,
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
    /// Point a Service at a ReplicaSet's pods, noting when (`selected_at`).
    SetServiceSelector {
        service: String,
        hash: String,
        at: Timestamp,
    },
    /// Write the forward action annotation (and the managed-actions
    /// marker), or the header routes' annotations (None: remove) and paths.
    SetIngressAction {
        ingress: String,
        annotations: BTreeMap<String, Option<String>>,
        rules: Option<Vec<IngressRule>>,
    },
    /// Direct mode: set the listener's or rule's forward weights.
    SetAlbWeights {
        canary_weight: i32,
    },
    /// `workloadRef.scaleDown`: set the Deployment's replicas.
    ScaleDeployment {
        name: String,
        replicas: i32,
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
pub use deadline::DEADLINE_REASON;
pub use targets::GATE_TIMEOUT_REASON;
pub const INCONCLUSIVE_REASON: &str = "InconclusiveAnalysisRun";
/// Floor for analysis requeues, so a clock skew cannot spin the loop.
const MIN_REQUEUE: Duration = Duration::from_secs(1);
/// How often to look again while pods are being restarted.
const RESTART_INTERVAL: Duration = Duration::from_secs(5);
/// How often to look at AWS again while the ALB has not applied the weights.
const VERIFY_INTERVAL: Duration = Duration::from_secs(10);

/// The canary weight every Ingress carries (None without ALB routing, when
/// an annotation is absent or not ours, or while the Ingresses disagree).
pub fn annotated_canary_weight(world: &World, plan: &Plan) -> Option<i32> {
    let mut weights = ingress_weights(world, plan);
    let first = weights.next()??;
    weights.all(|w| w == Some(first)).then_some(first)
}

/// The canary weight each of the plan's Ingresses carries, in order (None:
/// missing, or no annotation of ours).
pub fn ingress_weights<'a>(
    world: &'a World,
    plan: &'a Plan,
) -> impl Iterator<Item = Option<i32>> + 'a {
    let alb = plan.alb.as_ref();
    alb.into_iter().flat_map(|a| &a.ingresses).map(move |name| {
        let alb = alb?;
        let ingress = world.ingresses.iter().find(|i| &i.name == name)?;
        let value = ingress.annotations.get(&alb.action_key())?;
        alb::parse_action(value)
            .ok()?
            .weight_of(&plan.canary_service)
    })
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
    let mut status = before.clone();
    // Each gate is recorded afresh by the reconcile still waiting at it.
    let gates_before = std::mem::take(&mut status.traffic_gates);
    let mut d = Decider {
        name: rollout.metadata.name.clone().unwrap_or_default(),
        meta: &rollout.metadata,
        world,
        status,
        gates_before,
        actions: Vec::new(),
        requeue: None,
        events: Vec::new(),
        metrics: BTreeMap::new(),
        analysing: false,
    };
    d.status.observed_generation = rollout.metadata.generation;
    match plan_of(rollout) {
        Err(errors) => d.invalid(&errors.join("; ")),
        Ok(plan) => {
            d.condition("InvalidSpec", false, "Valid", "");
            match world.pod_template(&rollout.spec) {
                Some(template) => {
                    let hash = crate::hash::pod_template_hash(template);
                    d.run(&plan, &hash);
                    d.sync_pod_metadata(&plan);
                    d.restart(&plan);
                    d.track_progress(&plan, &before);
                    d.scale_workload(&plan);
                }
                None => {
                    let name = plan.workload.as_ref().map_or("", |w| &w.deployment);
                    d.degraded(
                        "WorkloadMissing",
                        &format!("spec.workloadRef: Deployment {name:?} not found"),
                    );
                }
            }
            let index = d.status.current_step_index.unwrap_or(0);
            d.status.step_display = Some(format!("{index}/{}", plan.steps.len()));
            d.status.selector = crate::hash::selector_string(world.selector(&rollout.spec));
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
    /// The traffic gates the status showed (when each wait started).
    gates_before: Vec<TrafficGate>,
    actions: Vec<Action>,
    requeue: Option<Duration>,
    events: Vec<Note>,
    /// Resolved metrics by analysis run name.
    metrics: BTreeMap<String, Vec<Metric>>,
    /// Held at a step analysis still measuring (no progress deadline then).
    analysing: bool,
}

/// Where an analysis gate stands.
enum Gate {
    Passed,
    Running,
    Failed(String),
    Inconclusive(String),
}

impl Decider<'_> {
    /// Picks the situation: no stable revision yet, the template is the
    /// stable one, or a new template to walk the canary steps with.
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
                // A watched ALB that could not be read just now holds the
                // measurements (the glue resolves for real), not the rollout.
                let unread;
                let alb = match &self.world.alb {
                    Some(Ok(observed)) => Some(observed),
                    Some(Err(_)) => {
                        unread = Observed::placeholder();
                        Some(&unread)
                    }
                    None => None,
                };
                let ctx = ArgContext {
                    rollout: Some(self.meta),
                    stable_hash: Some(&stable),
                    latest_hash: Some(hash),
                    secrets: None,
                    alb,
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

/// Canary pods once step `step` completed: with traffic routing, the most
/// any step so far asked for (a lower setWeight or setCanaryScale never
/// takes pods from the running canary); without, the weight's share.
pub fn canary_replicas_after(plan: &Plan, step: usize) -> i32 {
    let at = |i: usize| plan.canary_pods(i + 1, weight_before(plan, i + 1));
    match plan.alb {
        Some(_) => (0..=step).map(at).max().unwrap_or(0),
        None => at(step),
    }
}

/// Stable pods for a weight: all of them with traffic routing; without,
/// the rest of `replicas` (at least one while a stable Service selects
/// them; none at 100% without one, as Argo's basic canary).
pub fn stable_replicas(plan: &Plan, weight: i32) -> i32 {
    let rest = plan.replicas - canary_replicas(plan.replicas, weight);
    match (&plan.alb, plan.stable_service.is_empty()) {
        // Its share, rounded up, and a pod while its Service selects it.
        (Some(_), _) if plan.dynamic_stable_scale => {
            canary_replicas(plan.replicas, 100 - weight).max(plan.replicas.min(1))
        }
        (Some(_), _) => plan.replicas,
        (None, true) => rest.max(0),
        (None, false) => rest.max(plan.replicas.min(1)),
    }
}

fn hold_name(reason: &str) -> &'static str {
    match reason {
        INCONCLUSIVE_REASON => "inconclusive analysis",
        _ => "pause step",
    }
}
