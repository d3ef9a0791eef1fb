//! A new template walking the canary's steps: setWeight, pause, analysis.

use super::*;

impl Decider<'_> {
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
            if self.within_rollback_window(plan, stable, hash) {
                self.status.promote_full = true;
                self.events.push((
                    "RollbackWithinWindow".into(),
                    format!(
                        "{hash} is one of the last {} revisions: its steps are skipped",
                        plan.rollback_window
                    ),
                ));
            }
        }
        // A basic canary shares `replicas` with the stable (`set_weight`);
        // with traffic routing it keeps them all, or (dynamicStableScale)
        // its share; an abort brings it back to full size at once.
        if plan.alb.is_some() || self.status.abort {
            let size = self.stable_size(plan, stable, hash);
            self.ensure_replicas(plan, stable, size);
        }
        self.cancel_scale_down(stable);

        self.record_measurements(hash);
        if self.status.abort {
            self.abort(plan, stable);
            return;
        }
        // Back to a template scheduled for scale-down as an earlier canary
        // (or aborted): its drain starts afresh when it leaves again.
        self.cancel_scale_down(hash);
        if self.status.aborted_at.is_some() {
            // `retry` cleared abort: start the steps and the analyses again.
            self.status.start_revision(hash, 0);
            self.events.push((
                "RolloutRetried".into(),
                "retrying the canary from the first step".into(),
            ));
        }
        // A promotion cut short (by a new template, or by an abort and a
        // retry) may have left the stable Service on a canary's pods: with
        // traffic routing, it goes back first (the stable is kept at full
        // size then), or the steps' weights would not mean what they say.
        let promoting =
            self.status.promote_full || self.status.current_step_index.is_some_and(|i| i >= n);
        let stable_elsewhere = plan.alb.is_some()
            && self
                .service_hash(&plan.stable_service)
                .is_some_and(|h| h != stable && (h != hash || !promoting));
        if stable_elsewhere
            && !(self.fully_available(stable, plan.replicas)
                && self.repoint(plan, &plan.stable_service, stable))
        {
            self.progressing("pointing the stable Service back at the stable ReplicaSet");
            return;
        }
        // Any canary from an earlier template loses its traffic first.
        let canary_service_elsewhere = self
            .service_hash(&plan.canary_service)
            .is_some_and(|h| h != hash && h != stable);
        if canary_service_elsewhere && self.traffic_on(plan, &plan.canary_service) {
            self.clear_traffic(plan, &plan.canary_service.clone());
            self.progressing("moving traffic off the previous canary");
            return;
        }
        self.retire_others(plan, &[stable, hash], plan.scale_down_delay);

        if self.status.promote_full {
            self.status.current_step_index = Some(n);
        }
        if plan.paused {
            // A weight above the current step's (a promotion cut short and
            // retried) still comes down, once the stable's group serves.
            let index = self.status.current_step_index.unwrap_or(0).clamp(0, n) as usize;
            let cap = plan.steps[..(index + 1).min(plan.steps.len())]
                .iter()
                .filter_map(|s| match s {
                    StepKind::SetWeight(w) => Some(*w),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            if index < plan.steps.len() && self.group_weight(plan, &plan.canary_service) > cap {
                self.ensure_weights(plan, cap);
            }
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
            let i = index as usize;
            // Every step holds a weight (its own, or the last setWeight's)
            // and the header routes set so far, against restarts and
            // drift, while pausing, analysing or scaling.
            let weight = match &plan.steps[i] {
                StepKind::SetWeight(w) => *w,
                _ => weight_before(plan, i),
            };
            let reached = self.set_weight(plan, hash, weight, i)
                && self.set_routes(plan, hash, i)
                && match &plan.steps[i] {
                    StepKind::Pause(duration) => self.hold(PAUSE_REASON, *duration, None),
                    StepKind::Analysis(_) => self.step_analysis(i, hash),
                    StepKind::SetWeight(_)
                    | StepKind::SetCanaryScale(_)
                    | StepKind::SetHeaderRoute(_) => true,
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

    /// `rollbackWindow`: `hash` is an earlier revision whose ReplicaSet is
    /// kept, with fewer than `revisions` ReplicaSets created after it up
    /// to the stable one (Argo: from 5 with a window of 3, back to 4 or 3).
    /// History is pruned oldest first, so every ReplicaSet newer than a
    /// kept one is still there to be counted.
    fn within_rollback_window(&self, plan: &Plan, stable: &str, hash: &str) -> bool {
        let (Some(back), Some(stable)) = (self.rs(hash), self.rs(stable)) else {
            return false;
        };
        let (Some(from), Some(to)) = (back.created, stable.created) else {
            return false;
        };
        let between = self
            .world
            .replica_sets
            .iter()
            .filter(|r| r.created.is_some_and(|c| from < c && c <= to))
            .count();
        from < to && between < plan.rollback_window
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

    /// At step `step`, gives this revision `weight`% once it has the pods
    /// for it (the weight's share, or the setCanaryScale in force), scaled
    /// up before traffic moves. Only this revision may receive the
    /// canary's share, so the canary Service selects it before any weight
    /// moves.
    pub(super) fn set_weight(&mut self, plan: &Plan, hash: &str, weight: i32, step: usize) -> bool {
        let want = plan.canary_pods(step + 1, weight);
        if plan.alb.is_none() {
            let stable = self.status.stable_rs.clone().unwrap_or_default();
            let stable_want = stable_replicas(plan, weight);
            if !self.scale_basic(plan, &stable, hash, want, stable_want) {
                return false;
            }
            if weight > 0 {
                self.point(&plan.canary_service, hash);
            }
            return weight == 0 || self.on(&plan.canary_service, hash);
        }
        // The canary Service selects the pods before they are created (its
        // patch goes first when both are decided at once), so that the LB
        // controller's webhook gives them its readiness gate for the
        // canary's target group.
        let selected = weight == 0 || self.repoint(plan, &plan.canary_service, hash);
        if !selected && !self.pointing(&plan.canary_service, hash) {
            return false;
        }
        // A canary with more pods than the weight needs (a lower setWeight
        // or setCanaryScale, a retry after a promotion began) keeps them:
        // the ReplicaSet controller would delete pods the ALB still sends
        // requests to, or still drains. They go when the canary is
        // promoted or retired.
        if self.rs(hash).is_none_or(|r| r.replicas < want) {
            self.ensure_replicas(plan, hash, want);
        }
        if !self
            .rs(hash)
            .is_some_and(|r| r.replicas >= want && r.available >= want)
        {
            return false;
        }
        selected && self.ensure_weights(plan, weight)
    }

    /// At step `step`, the header routes the steps so far set; the canary
    /// Service selects this revision before one is added.
    fn set_routes(&mut self, plan: &Plan, hash: &str, step: usize) -> bool {
        let want = plan.routes_at(step);
        if !want.is_empty() && !self.repoint(plan, &plan.canary_service, hash) {
            return false;
        }
        self.ensure_routes(plan, &want)
    }
}
