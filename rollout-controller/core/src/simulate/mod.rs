//! A cluster in memory that runs the real decision: it applies each
//! decided action to a simulated world (ReplicaSets, Services, the Ingress,
//! the ALB), writes the status with the glue's merge patch, measures
//! analysis through the real scheduling and judgement, runs the AWS Load
//! Balancer Controller and the ALB with AWS's timing, and records any
//! moment traffic could reach a Service without available pods or a target
//! group without healthy targets, any pod deleted while requests may still
//! reach it, or a status write that left the server holding something
//! other than the decision.
//! The decision tests drive it step by step; `gantry rollout plan` drives it
//! through a whole rollout to print the timeline.
//!
//! Here: the simulation and its reconcile loop; `cluster`: the world acting
//! on a decision; `alb`: the LB controller and the ALB; `checks`:
//! measurements and invariants; `handles`: what a test or human does and
//! reads.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::IngressRule;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::alb::routes::USE_ANNOTATION;
use crate::analysis::QueryValue;
use crate::decide::{Decision, decide};
use crate::status_patch::status_patch;
use crate::types::{AnalysisPhase, Rollout};
use crate::world::{HealthGate, IngressView, ServiceView, World};

mod alb;
mod checks;
mod cluster;
mod handles;

pub use alb::{Lb, pod_ip};

pub struct Simulation {
    pub rollout: Rollout,
    pub world: World,
    /// Pods become available as soon as they are created.
    pub kubelet: bool,
    /// API writes the decisions caused (actions and status changes).
    pub writes: usize,
    /// What the simulated Prometheus answers, by metric name (absent: down).
    pub prometheus: BTreeMap<String, QueryValue>,
    /// Every measurement gets this verdict instead of evaluating a value.
    pub verdict: Option<AnalysisPhase>,
    /// Whether the simulated AWS Load Balancer Controller runs (mirrors
    /// endpoints and weights onto the ALB).
    pub lb_controller: bool,
    /// The LB controller's and the ALB's timing and state.
    pub lb: Lb,
    /// The LB controller's webhook gives each new pod a readiness gate for
    /// the target group of every Service selecting it then (the namespace
    /// is labelled `elbv2.k8s.aws/pod-readiness-gate-inject: enabled`).
    pub readiness_gates: bool,
    /// Each pod's readiness gates: by the Service whose group it is for,
    /// the condition the LB controller last set.
    gates: BTreeMap<String, BTreeMap<String, HealthGate>>,
    /// preStop sleeps by ReplicaSet hash (dynamicStableScale): a deleted
    /// pod of theirs terminates, serving on, until `stopping` says.
    pre_stop: BTreeMap<String, SignedDuration>,
    stopping: BTreeMap<String, Timestamp>,
    /// Broken safety invariants, in the order they happened.
    pub violations: Vec<String>,
    /// When `Some`, someone subscribes to notifications: every reconcile
    /// records them in the status as the glue does, and those due are
    /// appended here.
    pub notifications: Option<Vec<crate::notify::Occurrence>>,
    created: i64,
}

impl Simulation {
    /// The Rollout's Services and Ingress exist (named as its spec says),
    /// nothing else does yet.
    pub fn new(rollout: Rollout) -> Simulation {
        let service = |name: Option<&String>| {
            name.filter(|n| !n.is_empty()).map(|n| ServiceView {
                name: n.clone(),
                hash: None,
                selected_at: None,
                endpoints: Vec::new(),
            })
        };
        // The plan's names: with pingPong, the ping and pong Services.
        let plan = crate::validate::plan_of(&rollout).ok();
        let ingresses = plan
            .iter()
            .flat_map(|p| {
                p.alb
                    .iter()
                    .flat_map(|a| a.ingresses.iter().map(move |i| (a, i)))
            })
            .map(|(alb, name)| IngressView {
                name: name.clone(),
                annotations: BTreeMap::new(),
                rules: vec![root_rule(&alb.root_service)],
                hostname: Some(format!("k8s-{name}.eu-west-1.elb.amazonaws.com")),
            })
            .collect();
        Simulation {
            world: World {
                now: "2026-01-01T00:00:00Z".parse().expect("a timestamp"),
                stable_service: service(plan.as_ref().map(|p| &p.stable_service)),
                canary_service: service(plan.as_ref().map(|p| &p.canary_service)),
                ingresses,
                ..Default::default()
            },
            rollout,
            kubelet: true,
            writes: 0,
            prometheus: BTreeMap::new(),
            verdict: None,
            lb_controller: true,
            lb: Lb::default(),
            readiness_gates: false,
            gates: BTreeMap::new(),
            pre_stop: BTreeMap::new(),
            stopping: BTreeMap::new(),
            violations: Vec::new(),
            notifications: None,
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
        self.slot_services();
        self.world.measurements = self.measure();
        let read = self.rollout.status.clone();
        let mut d = decide(&self.rollout, &self.world);
        if let Some(sent) = &mut self.notifications {
            let plan = crate::validate::plan_of(&self.rollout).ok();
            let now = self.world.now;
            sent.extend(crate::notify::due(
                &self.rollout,
                plan.as_ref(),
                &mut d.status,
                now,
            ));
        }
        self.world.measurements.clear();
        meanwhile(self);
        let raced = self.rollout.status != read;
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
        self.slot_services();
        self.run_pods();
        self.sync_traffic();
        self.check_lb();
        self.check_traffic();
        d
    }

    /// Each Service in the slot of its role, as the glue observes them
    /// (with pingPong the roles swap at a promotion).
    fn slot_services(&mut self) {
        let stable = crate::validate::plan_of(&self.rollout).map(|p| p.stable_service);
        let w = &mut self.world;
        if let (Ok(stable), Some(canary)) = (stable, &w.canary_service)
            && canary.name == stable
        {
            std::mem::swap(&mut w.stable_service, &mut w.canary_service);
        }
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
}

/// An Ingress rule sending every path to `root`'s action annotation.
pub fn root_rule(root: &str) -> IngressRule {
    serde_json::from_value(serde_json::json!({
        "http": { "paths": [{
            "path": "/",
            "pathType": "Prefix",
            "backend": { "service": { "name": root, "port": { "name": USE_ANNOTATION } } }
        }] }
    }))
    .expect("an Ingress rule")
}
