//! `dynamicStableScale`: with traffic routing the stable keeps only the
//! pods for its share of the traffic — the larger of what the current
//! step gives it and what the ALB may still send it — so it shrinks once
//! the weight has moved away (shown by the ALB, or settled without the
//! ELBv2 API) and grows before weight comes back (`may_move` waits for its
//! pods). An abort brings it back to full size first, as without.
//!
//! Shrinking deletes pods of a target group that still has weight: safe
//! only because they stop gracefully. Every ReplicaSet of such a Rollout
//! gets a preStop hook (`pre_stop`) that keeps a deleted pod serving while
//! the LB controller and the ALB deregister it; a stable created without
//! one (before the field was set) keeps its full size.

use crate::types::GateKind;

use super::*;

/// The shortest preStop sleep gantry gives (the sleep action takes whole
/// seconds).
const MIN_PRE_STOP: Duration = Duration::from_secs(1);

impl Decider<'_> {
    /// The preStop sleep new ReplicaSets get: how long the ALB may take to
    /// act on a change (the settle time).
    pub(super) fn pre_stop(&self, plan: &Plan) -> Option<Duration> {
        let alb = plan.alb.as_ref().filter(|_| plan.dynamic_stable_scale)?;
        Some(self.settle_time(alb).max(MIN_PRE_STOP))
    }

    /// The stable's size while canary `hash` runs.
    pub(super) fn stable_size(&mut self, plan: &Plan, stable: &str, hash: &str) -> i32 {
        if !plan.dynamic_stable_scale || plan.alb.is_none() || self.status.abort {
            return plan.replicas;
        }
        let Some(rs) = self.rs(stable) else {
            return plan.replicas;
        };
        let current = rs.replicas;
        if !rs.stops_gracefully {
            return plan.replicas;
        }
        match self.service_hash(&plan.stable_service) {
            Some(h) if h == stable => {}
            // A promotion under way: the stable Service is on the canary's
            // pods, and the old stable keeps what it has.
            Some(h) if h == hash => return current,
            _ => return plan.replicas,
        }
        let n = plan.steps.len();
        let index = self.status.current_step_index.unwrap_or(0).max(0) as usize;
        let earlier_canary = self
            .service_hash(&plan.canary_service)
            .is_some_and(|h| h != hash && h != stable);
        let desired = match plan.steps.get(index) {
            // An earlier canary's traffic comes back to the stable first.
            _ if earlier_canary => 0,
            Some(StepKind::SetWeight(w)) => *w,
            Some(_) => weight_before(plan, index),
            None if index >= n => 100,
            None => 0,
        };
        // One pod stays while the stable Service selects it (as Argo):
        // its Service and target group are never left empty mid-canary.
        let in_force = 100 - self.group_weight(plan, &plan.stable_service);
        let size = stable_replicas(plan, desired).max(stable_replicas(plan, in_force));
        // Without the ELBv2 API the ALB is known to apply the weights only
        // once they have settled: until then the stable only grows.
        if size < current && self.world.alb.is_none() {
            let alb = plan.alb.as_ref().expect("dynamic scaling has ALB routing");
            let since = self.weights_since().unwrap_or(self.world.now);
            if !self.elapsed(since, self.settle_time(alb)) {
                return current;
            }
        }
        size
    }

    /// Whether the stable Service's pods are enough for a stable share of
    /// `stable_weight`% (always, without dynamicStableScale: it keeps
    /// all); the wait is a traffic gate, timed out as the others.
    pub(super) fn stable_can_take(&mut self, plan: &Plan, stable_weight: i32) -> bool {
        if !plan.dynamic_stable_scale {
            return true;
        }
        let need = canary_replicas(plan.replicas, stable_weight);
        let hash = self.service_hash(&plan.stable_service).unwrap_or_default();
        let has = self.rs(&hash).map_or(0, |r| r.available);
        if has >= need {
            return true;
        }
        let service = plan.stable_service.clone();
        let message = format!(
            "{service} has {has} available pod(s) of the {need} for {stable_weight}% of the traffic (dynamicStableScale): waiting for them before weight moves back"
        );
        let since = self.waiting(GateKind::TargetsHealthy, &service, &hash, message.clone());
        let timeout = plan
            .alb
            .as_ref()
            .map_or(Duration::ZERO, |a| a.gates.timeout);
        if self.elapsed(since, timeout) {
            self.gate_timed_out(&message, timeout);
        }
        false
    }
}
