//! What a test or a human does to the simulation (promote, operate, let
//! time pass) and what it reads back.

use serde_json::{Value, json};

use k8s_openapi::jiff::SignedDuration;

use crate::decide::{Decision, ingress_weights};
use crate::hash::pod_template_hash;
use crate::ops::{self, Op};
use crate::types::{Phase, RolloutStatus};
use crate::validate::plan_of;

use super::Simulation;

impl Simulation {
    /// The canary's share as the load balancer applies it.
    pub fn canary_weight(&self) -> Option<i32> {
        let plan = plan_of(&self.rollout).ok()?;
        let alb = plan.alb.as_ref()?;
        if alb.direct.is_some() {
            return self.aws_canary_weight();
        }
        // The simulated ALB is the first Ingress's (the others carry the
        // same weights once a decision is applied).
        ingress_weights(&self.world, &plan).next().flatten()
    }

    /// The canary weight `world.alb` shows (what AWS applies).
    pub(super) fn aws_canary_weight(&self) -> Option<i32> {
        let observed = self.world.alb.as_ref()?.as_ref().ok()?;
        observed.weights.map(|(c, _)| c)
    }

    /// The pod-template-hash of the Rollout's current template.
    pub fn hash(&self) -> String {
        self.world
            .pod_template(&self.rollout.spec)
            .map(pod_template_hash)
            .unwrap_or_default()
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
    pub(super) fn merge(&mut self, patch: &Value) {
        let mut doc = serde_json::to_value(&self.rollout).expect("a Rollout serializes");
        json_patch::merge(&mut doc, patch);
        self.rollout = serde_json::from_value(doc).expect("a merge patch of ours keeps the shape");
    }

    /// Lets time pass, the LB controller and the ALB acting (and checked)
    /// at every moment they change something.
    pub fn advance(&mut self, by: SignedDuration) {
        let end = self.world.now + by;
        self.sync_traffic();
        self.check_lb();
        while let Some(at) = self.next_lb_change().filter(|at| *at <= end) {
            self.world.now = at;
            self.sync_traffic();
            self.check_lb();
        }
        self.world.now = end;
        self.sync_traffic();
        self.check_lb();
    }

    /// Drives the rollout to Healthy as a patient human would: a reconcile
    /// at a time, promoting each pause that waits for it and letting 5 s
    /// pass otherwise; `each` sees every decision as it was applied.
    /// Whether it got there within `reconciles`.
    pub fn run_to_healthy(
        &mut self,
        reconciles: usize,
        mut each: impl FnMut(&Simulation, &Decision),
    ) -> bool {
        for _ in 0..reconciles {
            let decision = self.step();
            each(self, &decision);
            match self.phase() {
                Some(Phase::Healthy) => return true,
                Some(Phase::Paused) if self.status().is_some_and(|s| s.controller_pause) => {
                    self.promote()
                }
                _ => self.advance(SignedDuration::from_secs(5)),
            }
        }
        false
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
