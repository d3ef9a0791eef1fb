//! A revision's ends: the first deploy, a settled or rolled-back stable,
//! promotion of a canary that finished its steps, and abort.

use super::*;

impl Decider<'_> {
    /// No stable version yet: the first template becomes stable at once.
    pub(super) fn first_deploy(&mut self, plan: &Plan, hash: &str, n: i32) {
        self.no_progress(hash, n);
        self.ensure_replicas(plan, hash, plan.replicas);
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
    pub(super) fn settle(&mut self, plan: &Plan, hash: &str, n: i32) {
        if self.status.current_pod_hash.as_deref() != Some(hash)
            && self.status.current_pod_hash.is_some()
        {
            self.events.push((
                "RollbackToStable".into(),
                format!("template reverted to the stable version {hash}"),
            ));
        }
        self.no_progress(hash, n);
        self.ensure_replicas(plan, hash, plan.replicas);
        self.cancel_scale_down(hash);
        let available = self.fully_available(hash, plan.replicas);
        let stable_on = available && self.repoint(plan, &plan.stable_service, hash);
        let weights_done = stable_on && self.ensure_weights(plan, 0);
        let canary_on = weights_done && self.repoint(plan, &plan.canary_service, hash);
        if weights_done {
            self.retire_others(plan, &[hash], plan.scale_down_delay);
        }
        // With pingPong the canary Service, without weight, follows the
        // new stable in the background after a promotion.
        if canary_on || (weights_done && plan.ping_pong.is_some()) {
            self.healthy();
        } else {
            self.progressing("moving everything back to the stable ReplicaSet");
        }
    }

    /// All steps done: the canary becomes stable.
    pub(super) fn promote(&mut self, plan: &Plan, stable: &str, hash: &str) {
        self.status.controller_pause = false;
        self.status.pause_conditions.clear();
        let sized = match plan.alb {
            // The stable keeps a pod until its Service leaves it.
            None => self.scale_basic(
                plan,
                stable,
                hash,
                plan.replicas,
                stable_replicas(plan, 100),
            ),
            Some(_) => {
                self.ensure_replicas(plan, hash, plan.replicas);
                true
            }
        };
        if !sized || !self.fully_available(hash, plan.replicas) {
            self.progressing("scaling the canary up to full size before it becomes stable");
            return;
        }
        // Header routes end with the steps (as Argo).
        if !self.ensure_routes(plan, &[]) {
            self.progressing("removing the header routes");
            return;
        }
        // With traffic routing, the stable Service switches while its
        // target group carries no weight: all of it goes to the canary's
        // group first, and comes back once the new pods are healthy in the
        // stable's (the ALB would otherwise send it to a group whose new
        // targets are still registering). With pingPong the canary's
        // Service becomes the stable one instead, its group serving on.
        if !self.repoint(plan, &plan.canary_service, hash) {
            self.progressing("pointing the canary Service at the new ReplicaSet");
            return;
        }
        if plan.ping_pong.is_some() {
            if !self.ensure_weights(plan, 100) {
                self.progressing(&format!(
                    "moving all traffic to {}, which becomes the stable Service (pingPong)",
                    plan.canary_service
                ));
                return;
            }
            let stable_ping = self.status.canary.stable_ping_pong.as_deref() == Some(PING);
            let now_stable = if stable_ping { PONG } else { PING };
            self.status.canary.stable_ping_pong = Some(now_stable.to_string());
            self.events.push((
                "PingPongSwapped".into(),
                format!("{} is now the stable Service", plan.canary_service),
            ));
        } else if !self.repoint(plan, &plan.stable_service, hash) {
            self.progressing(
                "moving all traffic to the canary while the stable Service switches to the new ReplicaSet",
            );
            return;
        }
        if plan.ping_pong.is_none() && !self.ensure_weights(plan, 0) {
            self.progressing(
                "moving the traffic back to the stable Service, now on the new ReplicaSet",
            );
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

    pub(super) fn abort(&mut self, plan: &Plan, stable: &str) {
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
        // A basic canary's stable grows back first; a promotion cut short
        // may have left the stable Service on the canary's pods. The canary
        // Service goes back to the stable pods once its group carries no
        // weight, and the canary leaves the target groups before it is
        // scaled down.
        // (dynamicStableScale: it grows back first, a traffic gate.)
        let stable_serves = self.stable_can_take(plan, 100)
            && self.fully_available(stable, plan.replicas)
            && self.repoint(plan, &plan.stable_service, stable);
        if stable_serves
            && self.ensure_weights(plan, 0)
            && self.ensure_routes(plan, &[])
            && self.repoint(plan, &plan.canary_service, stable)
        {
            let due = aborted_at
                + SignedDuration::try_from(plan.abort_scale_down_delay)
                    .unwrap_or(SignedDuration::MAX);
            self.retire_at(plan, &[stable], due);
        }
        self.status.phase = Some(Phase::Degraded);
        let failed = self
            .status
            .analysis_runs
            .iter()
            .find(|r| matches!(r.phase, AnalysisPhase::Failed | AnalysisPhase::Error));
        let deadline = self
            .status
            .conditions
            .iter()
            .find(|c| c.reason.as_deref() == Some(DEADLINE_REASON) && c.status == "False");
        let cause = match (failed, deadline) {
            (Some(r), _) => format!(
                " after analysis {} failed ({})",
                r.name,
                r.message.as_deref().unwrap_or_default()
            ),
            (None, Some(c)) => format!(" ({})", c.message.as_deref().unwrap_or(DEADLINE_REASON)),
            (None, None) => String::new(),
        };
        self.status.message = Some(format!(
            "aborted{cause}: traffic is back on the stable version; retry or change the template"
        ));
        self.condition("Paused", false, "Aborted", "");
    }
}
