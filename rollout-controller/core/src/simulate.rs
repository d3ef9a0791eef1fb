//! A cluster in memory that runs the real decision: it applies each
//! decided action to a simulated world (ReplicaSets, Services, the Ingress,
//! the ALB), writes the status with the glue's merge patch, measures
//! analysis through the real scheduling and judgement, and records any
//! moment traffic could reach a Service without available pods, or a status
//! write that left the server holding something other than the decision.
//! The decision tests drive it step by step; `gantry rollout plan` drives it
//! through a whole rollout to print the timeline.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::analysis::{self, ArgContext, QueryValue, Verdict};
use crate::decide::{Action, Decision, annotated_canary_weight, decide};
use crate::hash::pod_template_hash;
use crate::ops::{self, Op};
use crate::status_patch::status_patch;
use crate::types::{AnalysisPhase, Measurement, Phase, Rollout, RolloutStatus};
use crate::validate::validate;
use crate::world::{IngressView, PodView, ReplicaSetView, ServiceView, Taken, World};

pub struct Simulation {
    pub rollout: Rollout,
    pub world: World,
    /// Pods become available as soon as they are asked for.
    pub kubelet: bool,
    /// API writes the decisions caused (actions and status changes).
    pub writes: usize,
    /// What the simulated Prometheus answers, by metric name (absent: down).
    pub prometheus: BTreeMap<String, QueryValue>,
    /// Every measurement gets this verdict instead of evaluating a value.
    pub verdict: Option<AnalysisPhase>,
    /// When AWS is watched: whether the simulated LB controller copies the
    /// Ingress weights onto the ALB after each reconcile.
    pub lb_controller: bool,
    /// Broken safety invariants, in the order they happened.
    pub violations: Vec<String>,
    created: i64,
}

impl Simulation {
    /// The Rollout's Services and Ingress exist (named as its spec says),
    /// nothing else does yet.
    pub fn new(rollout: Rollout) -> Simulation {
        let canary = rollout.spec.strategy.canary.as_ref();
        let service = |name: Option<&String>| {
            name.map(|n| ServiceView {
                name: n.clone(),
                hash: None,
            })
        };
        let ingress = canary
            .and_then(|c| c.traffic_routing.as_ref())
            .and_then(|t| t.alb.as_ref())
            .filter(|a| !a.ingress.is_empty())
            .map(|a| IngressView {
                name: a.ingress.clone(),
                annotations: BTreeMap::new(),
                routes_root_service: true,
                hostname: Some(format!("k8s-{}.eu-west-1.elb.amazonaws.com", a.ingress)),
            });
        Simulation {
            world: World {
                now: "2026-01-01T00:00:00Z".parse().expect("a timestamp"),
                stable_service: service(canary.map(|c| &c.stable_service)),
                canary_service: service(canary.map(|c| &c.canary_service)),
                ingress,
                ..Default::default()
            },
            rollout,
            kubelet: true,
            writes: 0,
            prometheus: BTreeMap::new(),
            verdict: None,
            lb_controller: true,
            violations: Vec::new(),
            created: 0,
        }
    }

    /// One reconcile: measure what is due, decide, apply, check traffic.
    pub fn step(&mut self) -> Decision {
        self.step_racing(|_| {})
    }

    /// One reconcile with `meanwhile` (another writer, say a human's
    /// promote) landing between the controller's read and its writes.
    pub fn step_racing(&mut self, meanwhile: impl FnOnce(&mut Simulation)) -> Decision {
        self.world.measurements = self.measure();
        let read = self.rollout.status.clone();
        let d = decide(&self.rollout, &self.world);
        self.world.measurements.clear();
        meanwhile(self);
        let raced = self.rollout.status != read;
        if self.lb_controller
            && let Some(weight) = self.canary_weight()
            && let Some(Ok(observed)) = &mut self.world.alb
        {
            observed.weights = Some((weight, 100 - weight));
        }
        for action in &d.actions {
            self.apply(action);
            self.writes += 1;
        }
        if let Some(patch) = status_patch(read.as_ref(), &d.status) {
            self.merge(&patch);
            self.writes += 1;
            // What raced in is kept where the decision did not change it.
            if !raced && self.rollout.status.as_ref() != Some(&d.status) {
                self.violations.push(format!(
                    "the status written is not the status decided: patch {patch} left {}",
                    serde_json::to_string(&self.rollout.status).unwrap_or_default()
                ));
            }
        }
        if self.kubelet {
            self.run_pods();
        }
        self.check_traffic();
        d
    }

    /// Reconciles until nothing changes; the last decision, or `None` when
    /// it keeps changing (a decision that never settles is a bug).
    pub fn settle(&mut self) -> Option<Decision> {
        for _ in 0..100 {
            let before = self.rollout.status.clone();
            let d = self.step();
            if d.actions.is_empty() && self.rollout.status == before {
                return Some(d);
            }
        }
        None
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::CreateReplicaSet { hash, replicas } => {
                self.created += 1;
                self.world.replica_sets.push(ReplicaSetView {
                    name: format!(
                        "{}-{hash}",
                        self.rollout.metadata.name.as_deref().unwrap_or("")
                    ),
                    hash: hash.clone(),
                    replicas: *replicas,
                    ready: 0,
                    available: 0,
                    scale_down_at: None,
                    created: Timestamp::from_second(self.created).ok(),
                });
            }
            Action::ScaleReplicaSet { name, replicas } => {
                if *replicas == 0 {
                    self.check_scale_down(name);
                }
                if let Some(rs) = self.world.replica_sets.iter_mut().find(|r| &r.name == name) {
                    rs.replicas = *replicas;
                    rs.available = rs.available.min(*replicas);
                    rs.ready = rs.ready.min(*replicas);
                }
            }
            Action::ScheduleScaleDown { name, at } => {
                if let Some(rs) = self.world.replica_sets.iter_mut().find(|r| &r.name == name) {
                    rs.scale_down_at = *at;
                }
            }
            Action::DeleteReplicaSet { name } => {
                self.world.replica_sets.retain(|r| &r.name != name)
            }
            Action::SetServiceSelector { service, hash } => {
                let w = &mut self.world;
                for s in [&mut w.stable_service, &mut w.canary_service]
                    .into_iter()
                    .flatten()
                {
                    if &s.name == service {
                        s.hash = Some(hash.clone());
                    }
                }
            }
            Action::SetAlbWeights { canary_weight } => {
                if let Some(Ok(observed)) = self.world.alb.as_mut() {
                    observed.weights = Some((*canary_weight, 100 - canary_weight));
                }
            }
            Action::EvictPod { name } => {
                let Some(i) = self.world.pods.iter().position(|p| &p.name == name) else {
                    return;
                };
                let pod = self.world.pods.remove(i);
                if let Some(rs) = self
                    .world
                    .replica_sets
                    .iter_mut()
                    .find(|r| r.hash == pod.hash)
                {
                    rs.available = (rs.available - 1).max(0);
                    rs.ready = (rs.ready - 1).max(0);
                }
            }
            Action::SetIngressAction { annotations, .. } => {
                if let Some(ingress) = self.world.ingress.as_mut() {
                    ingress.annotations.extend(annotations.clone());
                }
            }
        }
    }

    /// What the ReplicaSet controller and the kubelet do: as many pods as
    /// each ReplicaSet asks for (new ones created now), all available.
    fn run_pods(&mut self) {
        let now = self.world.now;
        for rs in &mut self.world.replica_sets {
            let mine = |p: &PodView| p.hash == rs.hash;
            let have = self.world.pods.iter().filter(|p| mine(p)).count() as i32;
            for _ in have..rs.replicas {
                self.created += 1;
                self.world.pods.push(PodView {
                    name: format!("{}-{}", rs.name, self.created),
                    hash: rs.hash.clone(),
                    created: now,
                    terminating: false,
                });
            }
            let mut extra = (have - rs.replicas).max(0);
            self.world.pods.retain(|p| {
                let drop = mine(p) && extra > 0;
                extra -= i32::from(drop);
                !drop
            });
            rs.available = rs.replicas;
            rs.ready = rs.replicas;
        }
        let hashes: Vec<String> = self
            .world
            .replica_sets
            .iter()
            .map(|r| r.hash.clone())
            .collect();
        self.world.pods.retain(|p| hashes.contains(&p.hash));
    }

    /// Pods are taken away only from what no longer gets traffic.
    fn check_scale_down(&mut self, name: &str) {
        let Some(hash) = self
            .world
            .replica_sets
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.hash.clone())
        else {
            return;
        };
        let selects = |s: &Option<ServiceView>| {
            s.as_ref().and_then(|s| s.hash.as_deref()) == Some(hash.as_str())
        };
        if selects(&self.world.stable_service) {
            self.violations
                .push(format!("scaled down {name}, the stable Service's pods"));
        }
        if selects(&self.world.canary_service) && self.canary_weight().unwrap_or(0) > 0 {
            self.violations
                .push(format!("scaled down {name}, which has canary traffic"));
        }
    }

    /// What the glue does before deciding: measure the metrics due, with
    /// the same resolution, scheduling and judgement.
    fn measure(&self) -> Vec<Taken> {
        let Some(status) = &self.rollout.status else {
            return Vec::new();
        };
        let Ok(plan) = validate(&self.rollout.spec) else {
            return Vec::new();
        };
        let ctx = ArgContext {
            rollout: Some(&self.rollout.metadata),
            stable_hash: status.stable_rs.as_deref(),
            latest_hash: status.current_pod_hash.as_deref(),
            secrets: None,
        };
        let Ok(metrics) = analysis::resolve_plan(&plan, &self.world.templates, &ctx) else {
            return Vec::new();
        };
        let now = self.world.now.to_string();
        let mut taken = Vec::new();
        for run in &status.analysis_runs {
            let Some(run_metrics) = metrics.get(&run.name) else {
                continue;
            };
            for m in analysis::due(run, run_metrics, self.world.now) {
                let value = self.prometheus.get(&m.name);
                let verdict = match (self.verdict, value) {
                    (Some(phase), _) => Verdict {
                        phase,
                        message: None,
                    },
                    (None, Some(v)) => analysis::evaluate(m, v),
                    (None, None) => Verdict {
                        phase: AnalysisPhase::Error,
                        message: Some("cannot reach Prometheus".into()),
                    },
                };
                taken.push(Taken {
                    run: run.name.clone(),
                    pod_template_hash: run.pod_template_hash.clone(),
                    metric: m.name.clone(),
                    measurement: Measurement {
                        phase: verdict.phase,
                        value: value.map(|v| v.to_string()),
                        started_at: now.clone(),
                        finished_at: now.clone(),
                        message: verdict.message,
                    },
                });
            }
        }
        taken
    }

    /// No request may reach a Service whose pods are not available.
    fn check_traffic(&mut self) {
        let available = |service: &Option<ServiceView>| {
            let hash = service.as_ref().and_then(|s| s.hash.clone());
            hash.and_then(|h| self.world.replica_sets.iter().find(|r| r.hash == h))
                .map_or(0, |r| r.available)
        };
        let weight = self.canary_weight().unwrap_or(0);
        let stable_selects = self
            .world
            .stable_service
            .as_ref()
            .is_some_and(|s| s.hash.is_some());
        if stable_selects && weight < 100 && available(&self.world.stable_service) == 0 {
            self.violations.push(format!(
                "{}% of traffic to stable with no available pods",
                100 - weight
            ));
        }
        if weight > 0 && available(&self.world.canary_service) == 0 {
            self.violations.push(format!(
                "{weight}% of traffic to the canary with no available pods"
            ));
        }
    }

    /// The canary's share as the load balancer applies it.
    pub fn canary_weight(&self) -> Option<i32> {
        let plan = validate(&self.rollout.spec).ok()?;
        let alb = plan.alb.as_ref()?;
        if alb.direct.is_some() {
            return self
                .world
                .alb
                .as_ref()?
                .as_ref()
                .ok()?
                .weights
                .map(|(c, _)| c);
        }
        annotated_canary_weight(&self.world, &plan)
    }

    /// The pod-template-hash of the Rollout's current template.
    pub fn hash(&self) -> String {
        pod_template_hash(&self.rollout.spec.template)
    }

    /// Argo's promote, whatever the rollout is doing: the pause conditions go.
    pub fn promote(&mut self) {
        self.merge(&json!({"status": {"pauseConditions": null}}));
    }

    /// What `gantry rollout <op>` writes, or why it refuses.
    pub fn operate(&mut self, op: Op) -> Result<(), String> {
        let patches = ops::patches(op, &self.rollout)?;
        if let Some(spec) = &patches.spec {
            self.merge(spec);
            *self.rollout.metadata.generation.get_or_insert(0) += 1;
        }
        if let Some(status) = &patches.status {
            self.merge(status);
        }
        Ok(())
    }

    /// Applies a JSON merge patch to the Rollout as the API server does.
    fn merge(&mut self, patch: &Value) {
        let mut doc = serde_json::to_value(&self.rollout).expect("a Rollout serializes");
        json_patch::merge(&mut doc, patch);
        self.rollout = serde_json::from_value(doc).expect("a merge patch of ours keeps the shape");
    }

    pub fn advance(&mut self, by: SignedDuration) {
        self.world.now += by;
    }

    pub fn status(&self) -> Option<&RolloutStatus> {
        self.rollout.status.as_ref()
    }

    pub fn phase(&self) -> Option<Phase> {
        self.status().and_then(|s| s.phase)
    }

    /// The replicas of the ReplicaSet with this hash (-1: none).
    pub fn replicas(&self, hash: &str) -> i32 {
        self.world
            .replica_sets
            .iter()
            .find(|r| r.hash == hash)
            .map_or(-1, |r| r.replicas)
    }
}
