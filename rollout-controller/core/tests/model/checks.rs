//! The invariants checked after every reconcile: steps in order through
//! their gates, traffic within the step and towards available pods, a
//! consistent status.

use super::*;

impl Model {
    /// Sent once per revision; every pause, abort and completion the
    /// status shows has been sent.
    pub(super) fn check_notifications(
        &mut self,
        before: &RolloutStatus,
        status: &RolloutStatus,
    ) -> Result<(), String> {
        let hash = self.sim.hash();
        // A new revision, or a retry (its abort cleared): a new occurrence of everything.
        let retried = before.aborted_at.is_some() && status.aborted_at.is_none();
        if retried || before.current_pod_hash.as_deref() != Some(hash.as_str()) {
            self.notified.clear();
        }
        let sent = std::mem::take(self.sim.notifications.as_mut().expect("subscribed"));
        for o in sent {
            if !self.notified.insert(o.key.clone()) {
                return Err(format!("{} sent twice", o.key));
            }
        }
        let canary = status.stable_rs.as_deref().is_some_and(|s| s != hash);
        let index = status.current_step_index.unwrap_or(0) + 1;
        let mut due = Vec::new();
        if canary && !status.pause_conditions.is_empty() && !status.abort {
            due.push(format!("paused/{hash}/{index}"));
        }
        if status.abort {
            due.push(format!(
                "aborted/{hash}/{}",
                status.aborted_at.clone().unwrap_or_default()
            ));
        }
        if status.phase == Some(Phase::Healthy) && !canary {
            due.push(format!("completed/{hash}"));
        }
        match due.into_iter().find(|key| !self.notified.contains(key)) {
            Some(missing) => Err(format!("{missing} never sent: sent {:?}", self.notified)),
            None => Ok(()),
        }
    }

    /// Steps are passed in order, each only once it allows it.
    pub(super) fn check_steps(
        &mut self,
        before: &RolloutStatus,
        status: &RolloutStatus,
        seen: &rollout_core::world::World,
        weight_seen: i32,
    ) -> Result<(), String> {
        let n = self.plan.steps.len() as i32;
        let hash = self.sim.hash();
        let now = seen.now;
        let mut from = before.current_step_index.unwrap_or(n);
        // A retry restarts what the controller had aborted by the time it
        // looks: not an abort it never carried out (simply withdrawn), nor
        // one aborted again before it looked.
        let retried =
            std::mem::take(&mut self.retry) && !before.abort && before.aborted_at.is_some();
        let new_revision = before.current_pod_hash.as_deref() != Some(hash.as_str());
        if retried || new_revision {
            self.reached.clear();
            self.released.clear();
            // Going back within the rollback window skips the steps.
            self.full = new_revision && self.within_rollback_window(before, seen, &hash);
            if self.full && !status.promote_full {
                return Err(format!(
                    "{hash} is within the rollback window: its steps ran"
                ));
            }
            from = if before.stable_rs.as_deref() == Some(hash.as_str()) {
                n
            } else {
                0
            };
        }
        let to = status.current_step_index.unwrap_or(0);
        if to < from {
            return Err(format!("step index went back from {from} to {to}"));
        }
        for k in from..to {
            if self.full {
                break;
            }
            let released = |reason: &str| self.released.contains(&(k, reason.to_string()));
            let passed = match &self.plan.steps[k as usize] {
                // A basic canary's weight is its share of the pods.
                StepKind::SetWeight(w) if self.plan.alb.is_none() => seen
                    .replica_sets
                    .iter()
                    .find(|r| r.hash == hash)
                    .is_some_and(|r| r.available >= canary_replicas(self.plan.replicas, *w)),
                StepKind::SetWeight(w) => {
                    let roles = self.plan.clone().in_roles(Some(before));
                    ingress_weights(seen, &roles).all(|carried| carried == Some(*w))
                }
                // Its pods are there (a lower scale may keep more).
                StepKind::SetCanaryScale(_) => {
                    let weight = weight_before(&self.plan, k as usize + 1);
                    let pods = self.plan.canary_pods(k as usize + 1, weight);
                    seen.replica_sets
                        .iter()
                        .find(|r| r.hash == hash)
                        .is_some_and(|r| r.available >= pods)
                }
                // Every Ingress carries exactly the routes set so far.
                StepKind::SetHeaderRoute(_) => {
                    let roles = self.plan.clone().in_roles(Some(before));
                    let alb = roles.alb.as_ref().expect("header routes need the ALB");
                    let want: Vec<String> = roles
                        .routes_at(k as usize)
                        .iter()
                        .map(|(name, _)| name.to_string())
                        .collect();
                    seen.ingresses
                        .iter()
                        .all(|i| routes_carried(i, alb) == want)
                }
                StepKind::Pause(None) => released(PAUSE_REASON),
                StepKind::Pause(Some(d)) => {
                    let start = self.reached.get(&k).copied().unwrap_or(now);
                    released(PAUSE_REASON) || start + SignedDuration::try_from(*d).unwrap() <= now
                }
                StepKind::Analysis(_) => {
                    released(INCONCLUSIVE_REASON)
                        || status.analysis_runs.iter().any(|r| {
                            r.name == format!("step-{k}")
                                && r.pod_template_hash == hash
                                && r.phase == AnalysisPhase::Successful
                        })
                }
            };
            if !passed {
                return Err(format!(
                    "step {k} ({:?}) of {hash} passed at {now} without its gate \
                     (reached {:?}, released {:?}, weight seen {weight_seen})",
                    self.plan.steps[k as usize],
                    self.reached.get(&k),
                    self.released,
                ));
            }
        }
        if to < n {
            self.reached.entry(to).or_insert(now);
        }
        Ok(())
    }

    /// `hash` is an earlier revision than the stable one, with fewer than
    /// `rollbackWindow.revisions` ReplicaSets made after it.
    fn within_rollback_window(
        &self,
        before: &RolloutStatus,
        seen: &rollout_core::world::World,
        hash: &str,
    ) -> bool {
        let created = |h: Option<&str>| {
            seen.replica_sets
                .iter()
                .find(|r| Some(r.hash.as_str()) == h)
                .and_then(|r| r.created)
        };
        let (Some(back), Some(stable)) =
            (created(Some(hash)), created(before.stable_rs.as_deref()))
        else {
            return false;
        };
        let after = seen
            .replica_sets
            .iter()
            .filter(|r| r.created.is_some_and(|c| back < c && c <= stable))
            .count();
        back < stable && after < self.plan.rollback_window
    }

    /// A basic canary never grows its stable and canary together past
    /// maxSurge (the stable's last pod aside; an abort or a rollback brings
    /// the stable back to full size at once, and the total then only
    /// shrinks); every running ReplicaSet of the stable or the current
    /// canary carries its role's metadata.
    pub(super) fn check_pods(
        &self,
        status: &RolloutStatus,
        seen: &rollout_core::world::World,
    ) -> Result<(), String> {
        let hash = self.sim.hash();
        let find = |w: &'_ rollout_core::world::World, h: Option<&String>| {
            w.replica_sets.iter().find(|r| Some(&r.hash) == h).cloned()
        };
        let pair = |w| (find(w, status.stable_rs.as_ref()), find(w, Some(&hash)));
        let total = |(s, c): &(Option<ReplicaSetView>, Option<ReplicaSetView>)| {
            s.as_ref().map_or(0, |r| r.replicas) + c.as_ref().map_or(0, |r| r.replicas)
        };
        let (now, before) = (pair(&self.sim.world), pair(seen));
        let moving = status.stable_rs.as_ref() != Some(&hash) && status.aborted_at.is_none();
        let limit = self.plan.replicas + self.plan.max_surge.max(1);
        if self.plan.alb.is_none() && moving && total(&now) > limit.max(total(&before)) {
            return Err(format!(
                "stable + canary grew from {} to {} pods, past replicas + maxSurge ({limit})",
                total(&before),
                total(&now)
            ));
        }
        // Pods are taken away only from spare capacity: a Service selecting
        // every revision (a basic canary without Services) keeps
        // replicas - maxUnavailable available, or as many as it had.
        let available = |w: &rollout_core::world::World| -> i32 {
            w.replica_sets.iter().map(|r| r.available).sum()
        };
        let floor = (self.plan.replicas - self.plan.max_unavailable).min(available(seen));
        if self.plan.alb.is_none() && available(&self.sim.world) < floor {
            return Err(format!(
                "available pods fell from {} to {}, below replicas - maxUnavailable ({})",
                available(seen),
                available(&self.sim.world),
                self.plan.replicas - self.plan.max_unavailable
            ));
        }
        let (stable, canary) = now;
        for (r, want) in [
            (stable, &self.plan.stable_metadata),
            (canary.filter(|_| moving), &self.plan.canary_metadata),
        ] {
            if let Some(r) = r.as_ref().filter(|r| r.replicas > 0)
                && r.pod_metadata != *want
            {
                return Err(format!(
                    "{} carries {:?}, not {want:?}",
                    r.name, r.pod_metadata
                ));
            }
        }
        Ok(())
    }

    /// Weights stay within the current step's, grow only towards fully
    /// available pods, and go back to stable on abort.
    pub(super) fn check_traffic(
        &self,
        status: &RolloutStatus,
        seen: &rollout_core::world::World,
        weight_seen: i32,
    ) -> Result<(), String> {
        let world = &self.sim.world;
        let weight = self.sim.canary_weight().unwrap_or(0);
        let hash = self.sim.hash();
        // The Services in their current roles (pingPong swaps them).
        let roles = plan_of(&self.sim.rollout).expect("a valid plan");
        let carried: Vec<Option<i32>> = ingress_weights(world, &roles).collect();
        if carried.windows(2).any(|w| w[0] != w[1]) {
            return Err(format!("the Ingresses disagree: {carried:?}"));
        }
        // Header routes likewise, and one is added only while the canary
        // Service selects the current revision with its pods available.
        if let Some(alb) = &roles.alb {
            let routes = |w: &rollout_core::world::World| -> Vec<_> {
                w.ingresses
                    .iter()
                    .map(|i| carried_conditions(i, alb))
                    .collect()
            };
            let (now, before) = (routes(world), routes(seen));
            if now.windows(2).any(|w| w[0] != w[1]) {
                return Err(format!("the Ingresses' header routes disagree: {now:?}"));
            }
            let added = now[0].iter().any(|r| !before[0].contains(r));
            let canary = world
                .canary_service
                .as_ref()
                .and_then(|s| s.hash.as_deref());
            let available = seen
                .replica_sets
                .iter()
                .any(|r| Some(r.hash.as_str()) == canary && r.available > 0);
            if added && (canary != Some(hash.as_str()) || !available) {
                return Err(format!(
                    "a header route added while the canary Service selects {canary:?} (current {hash}, available: {available})"
                ));
            }
        }
        let selected = |w: &rollout_core::world::World, stable: bool| {
            let s = if stable {
                &w.stable_service
            } else {
                &w.canary_service
            };
            s.as_ref().and_then(|s| s.hash.clone())
        };
        let canary = selected(world, false);
        // Enough available pods, in what the decision saw, for a share.
        let index = status.current_step_index.unwrap_or(0) as usize;
        let serves = |h: &Option<String>, weight: i32| {
            // The steps' scale (setCanaryScale), or the weight's share.
            let need = match index < self.plan.steps.len() {
                true => self.plan.canary_pods(index + 1, weight),
                false => canary_replicas(self.plan.replicas, weight),
            };
            seen.replica_sets
                .iter()
                .find(|r| Some(&r.hash) == h.as_ref())
                .is_some_and(|r| r.available > 0 && r.available >= need)
        };
        // An abort sends all traffic back at once, and no step gives the
        // canary more than it allows, unless the stable Service had already
        // switched to the canary's pods (a promotion under way, or cut short
        // by an abort and retried: it is pointed back only once its target
        // group carries no weight, so all of it waits on the canary's
        // group), or the stable's target group is not known to serve yet
        // (its gate holds).
        let stable_on_stable = selected(seen, true) == status.stable_rs;
        let pointing_back = !stable_on_stable && (weight <= weight_seen || weight == 100);
        // Weight waiting for the stable's target group to serve (its gate
        // recorded) may stay where it was, never grow.
        let gated = weight <= weight_seen
            && status
                .traffic_gates
                .iter()
                .any(|g| g.kind == GateKind::TargetsHealthy && g.target == roles.stable_service);
        if status.abort && weight != 0 && !pointing_back && !gated {
            return Err(format!("aborted with {weight}% still on the canary"));
        }
        let allowed = if index >= self.plan.steps.len() {
            100
        } else {
            self.plan.steps[..=index]
                .iter()
                .filter_map(|s| match s {
                    StepKind::SetWeight(w) => Some(*w),
                    _ => None,
                })
                .max()
                .unwrap_or(0)
        };
        let is_stable = canary == status.stable_rs;
        let over = weight > allowed && !gated && !pointing_back;
        if canary.as_deref() == Some(hash.as_str()) && !is_stable && over {
            return Err(format!(
                "{weight}% on the canary at step {index}, which allows {allowed}%"
            ));
        }
        // The share of all traffic the pods of `h` get, through either Service.
        let share = |w: &rollout_core::world::World, weight: i32, h: &Option<String>| {
            let through = |stable: bool, part: i32| {
                if selected(w, stable) == *h { part } else { 0 }
            };
            through(false, weight) + through(true, 100 - weight)
        };
        if canary.as_deref() != Some(hash.as_str())
            && !is_stable
            && share(world, weight, &canary) > share(seen, weight_seen, &canary)
        {
            return Err(format!(
                "traffic to the earlier canary {canary:?} grew from {weight_seen}% to {weight}% \
                 (current {hash}, stable {:?}, seen canary Service on {:?})",
                status.stable_rs,
                selected(seen, false)
            ));
        }
        let moved = canary != selected(seen, false);
        if weight > 0 && (weight > weight_seen || moved) && !serves(&canary, weight) {
            return Err(format!(
                "{weight}% sent to {canary:?} before all its pods were available"
            ));
        }
        // A dynamically scaled stable has the pods for a share before it
        // gets it.
        let stable_share = 100 - weight;
        if roles.dynamic_stable_scale && stable_share > 100 - weight_seen {
            let on = selected(seen, true);
            let need = canary_replicas(self.plan.replicas, stable_share);
            let has = seen
                .replica_sets
                .iter()
                .find(|r| Some(&r.hash) == on.as_ref())
                .map_or(0, |r| r.available);
            if has < need {
                return Err(format!(
                    "{stable_share}% moved onto the stable Service's {on:?}, which had {has} available pods of the {need} for it"
                ));
            }
        }
        let stable = selected(world, true);
        if roles.ping_pong.is_some() && stable.is_some() && stable != status.stable_rs {
            return Err(format!(
                "pingPong: the stable Service {} moved to {stable:?} (stable {:?})",
                roles.stable_service, status.stable_rs
            ));
        }
        if stable != selected(seen, true) && !serves(&stable, 100) {
            return Err(format!(
                "the stable Service moved to {stable:?} before its pods were available"
            ));
        }
        Ok(())
    }
}

/// What any written status must satisfy.
pub(super) fn check_consistent(
    status: &RolloutStatus,
    n: i32,
    spec_paused: Option<bool>,
) -> Result<(), String> {
    let problem = match status.phase {
        Some(Phase::Healthy) if status.holds_progress() => {
            "a Healthy rollout holds a pause or abort"
        }
        Some(Phase::Healthy) if status.message.is_some() => "a Healthy rollout keeps a message",
        Some(Phase::Healthy) if status.current_step_index != Some(n) => {
            "a Healthy rollout is not past its last step"
        }
        Some(Phase::Healthy) if status.stable_rs != status.current_pod_hash => {
            "a Healthy rollout is not on its stable revision"
        }
        Some(Phase::Paused) if status.pause_conditions.is_empty() && spec_paused != Some(true) => {
            "Paused without a pause condition or spec.paused"
        }
        Some(_) if status.phase != Some(Phase::Healthy) && status.message.is_none() => {
            "an unhealthy rollout without a message"
        }
        // A promote waits out spec.paused; otherwise it is acted on at once.
        _ if status.controller_pause
            && status.pause_conditions.is_empty()
            && spec_paused != Some(true) =>
        {
            "controllerPause without a pause condition"
        }
        _ => return Ok(()),
    };
    Err(format!("{problem}: {status:#?}"))
}
