//! ReplicaSets: creating and scaling them, scale-down deadlines, history,
//! and `spec.restartAt` restarts.

use super::*;

impl Decider<'_> {
    pub(super) fn rs(&self, hash: &str) -> Option<&ReplicaSetView> {
        self.world.replica_sets.iter().find(|r| r.hash == hash)
    }

    pub(super) fn fully_available(&self, hash: &str, replicas: i32) -> bool {
        self.rs(hash)
            .is_some_and(|r| r.replicas == replicas && r.available >= replicas)
    }

    pub(super) fn ensure_replicas(&mut self, plan: &Plan, hash: &str, replicas: i32) {
        match self.rs(hash) {
            None => {
                let pod_metadata = self.role_metadata(plan, hash).cloned().unwrap_or_default();
                let pre_stop = self.pre_stop(plan);
                self.actions.push(Action::CreateReplicaSet {
                    hash: hash.to_string(),
                    replicas,
                    pod_metadata,
                    pre_stop,
                })
            }
            Some(rs) if rs.replicas != replicas => {
                let name = rs.name.clone();
                self.actions
                    .push(Action::ScaleReplicaSet { name, replicas });
            }
            Some(_) => {}
        }
    }

    pub(super) fn cancel_scale_down(&mut self, hash: &str) {
        if let Some(rs) = self.rs(hash).filter(|r| r.scale_down_at.is_some()) {
            let name = rs.name.clone();
            self.actions
                .push(Action::ScheduleScaleDown { name, at: None });
        }
    }

    /// Schedules every ReplicaSet not in `keep` for scale-down after `delay`.
    pub(super) fn retire_others(&mut self, plan: &Plan, keep: &[&str], delay: Duration) {
        let due = self.world.now + SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
        self.retire_at(plan, keep, due);
    }

    /// Scales down every ReplicaSet not in `keep` at `due` (or, when the
    /// ALB cannot be asked per pod, once its drain time passed), except
    /// one a Service still selects or whose pods have not left the target
    /// groups; beyond `scaleDownDelayRevisionLimit` waiting ones (newest
    /// first), an older one goes once drained, without the delay; prunes
    /// old history.
    pub(super) fn retire_at(&mut self, plan: &Plan, keep: &[&str], due: Timestamp) {
        let now = self.world.now;
        let drained_by =
            now + SignedDuration::try_from(self.drain_time(plan)).unwrap_or(SignedDuration::MAX);
        let mut idle: Vec<ReplicaSetView> = Vec::new();
        let mut candidates: Vec<ReplicaSetView> = self
            .world
            .replica_sets
            .iter()
            .filter(|rs| !keep.contains(&rs.hash.as_str()))
            .cloned()
            .collect();
        candidates.sort_by_key(|r| std::cmp::Reverse(r.created));
        let mut waiting = 0;
        for rs in candidates {
            // Never scale down what a Service selects: its pods get traffic
            // or are about to be registered.
            let selected = plan
                .services()
                .any(|s| self.service_hash(s).as_deref() == Some(rs.hash.as_str()));
            if rs.replicas == 0 {
                idle.push(rs);
                continue;
            }
            if selected {
                // Selected again: its drain starts afresh when it leaves.
                self.cancel_scale_down(&rs.hash);
                continue;
            }
            let over_limit = plan.scale_down_revision_limit.is_some_and(|l| waiting >= l);
            waiting += 1;
            let due = if over_limit {
                drained_by
            } else {
                due.max(drained_by)
            };
            match rs.scale_down_at {
                None => self.actions.push(Action::ScheduleScaleDown {
                    name: rs.name.clone(),
                    at: Some(due),
                }),
                Some(at) if over_limit && at > due => {
                    self.actions.push(Action::ScheduleScaleDown {
                        name: rs.name.clone(),
                        at: Some(due),
                    });
                    self.requeue_in(due.duration_since(now).unsigned_abs());
                }
                Some(at) if at <= now => {
                    if !self.drained(plan, &rs) || !self.spare(plan, keep, &rs) {
                        continue;
                    }
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
        for rs in idle.iter().skip(plan.revision_history_limit as usize) {
            self.actions.push(Action::DeleteReplicaSet {
                name: rs.name.clone(),
            });
        }
    }

    /// Whether `rs`'s available pods may go: always with traffic routing
    /// (the stable stays at full size); in a basic canary, a Service may
    /// select every revision, so only while the ReplicaSets kept have
    /// `replicas - maxUnavailable` available without it.
    fn spare(&self, plan: &Plan, keep: &[&str], rs: &ReplicaSetView) -> bool {
        let kept: i32 = keep
            .iter()
            .filter_map(|h| self.rs(h))
            .map(|r| r.available)
            .sum();
        plan.alb.is_some() || rs.available == 0 || kept >= plan.replicas - plan.max_unavailable
    }

    pub(super) fn observe_counts(&mut self, hash: &str) {
        let sum =
            |f: fn(&ReplicaSetView) -> i32| self.world.replica_sets.iter().map(f).sum::<i32>();
        self.status.replicas = Some(sum(|r| r.replicas));
        self.status.ready_replicas = Some(sum(|r| r.ready));
        self.status.available_replicas = Some(sum(|r| r.available));
        self.status.updated_replicas = Some(self.rs(hash).map_or(0, |r| r.replicas));
    }

    /// `spec.restartAt`: one pod older than it at a time, and only while
    /// every ReplicaSet has all its pods available and nothing else is being
    /// changed; done (status.restartedAt) when no older pod is left.
    pub(super) fn restart(&mut self, plan: &Plan) {
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
}
