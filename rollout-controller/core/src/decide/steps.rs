//! The canary's steps: the first deploy, a settled or rolled-back stable,
//! a new template walking setWeight / pause / analysis, promotion, abort.

use super::*;

impl Decider<'_> {
    /// No stable version yet: the first template becomes stable at once.
    pub(super) fn first_deploy(&mut self, plan: &Plan, hash: &str, n: i32) {
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
    pub(super) fn canary(&mut self, plan: &Plan, stable: &str, hash: &str, n: i32) {
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

    /// The first or the stable template has no canary progress: whatever
    /// another revision left, or a hand-made patch set, goes.
    pub(super) fn no_progress(&mut self, hash: &str, n: i32) {
        if self.status.current_pod_hash.as_deref() != Some(hash) || self.status.holds_progress() {
            self.status.start_revision(hash, n);
        } else {
            self.status.current_step_index = Some(n);
        }
    }

    /// Gives this revision `weight`% once it has the pods for it: scaled
    /// up before traffic moves, down only after traffic left. Only this
    /// revision may receive the canary's share, so the canary Service
    /// selects it before any weight moves.
    pub(super) fn set_weight(&mut self, plan: &Plan, hash: &str, weight: i32) -> bool {
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
    pub(super) fn hold(
        &mut self,
        reason: &str,
        duration: Option<Duration>,
        why: Option<&str>,
    ) -> bool {
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

    pub(super) fn paused(&mut self, duration: Option<Duration>, why: Option<&str>) {
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
    pub(super) fn promote(&mut self, plan: &Plan, stable: &str, hash: &str) {
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
}
