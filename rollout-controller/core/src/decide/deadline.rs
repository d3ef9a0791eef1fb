//! The progress deadline (Argo's `progressDeadlineSeconds`): an update
//! that makes no progress for that long is Degraded, and a canary is
//! aborted when `progressDeadlineAbort` asks. Time spent paused, or at a
//! step analysis still measuring, does not count (as in Argo, where the
//! deadline is about pods). The time of the last progress is the `Progressing` condition's
//! `lastUpdateTime`, so a restarted controller keeps counting.

use super::*;

pub const DEADLINE_REASON: &str = "ProgressDeadlineExceeded";
const PROGRESSING: &str = "Progressing";

/// What counts as progress (Argo's): another revision, step, stable or
/// weight, a pause or an abort starting or ending (a retry starts the
/// clock afresh), ReplicaSets scaled, or more pods ready, available or up
/// to date. Pods failing is not progress.
fn progressed(before: &RolloutStatus, after: &RolloutStatus) -> bool {
    let marks = |s: &RolloutStatus| {
        (
            s.current_pod_hash.clone(),
            s.current_step_index,
            s.stable_rs.clone(),
            s.replicas,
            s.canary.weights.as_ref().map(|w| w.canary.weight),
            s.phase == Some(Phase::Paused),
            (s.abort, s.aborted_at.clone()),
        )
    };
    let more =
        |f: fn(&RolloutStatus) -> Option<i32>| f(after).unwrap_or(0) > f(before).unwrap_or(0);
    marks(before) != marks(after)
        || more(|s| s.updated_replicas)
        || more(|s| s.ready_replicas)
        || more(|s| s.available_replicas)
}

impl Decider<'_> {
    /// Restarts the clock on progress; marks the rollout Degraded (and a
    /// canary aborted, if asked) once it ran out; wakes up when it will.
    pub(super) fn track_progress(&mut self, plan: &Plan, before: &RolloutStatus) {
        if self.status.phase != Some(Phase::Progressing) || self.analysing {
            return;
        }
        let now = self.world.now;
        let progressed = progressed(before, &self.status);
        let last = self
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == PROGRESSING)
            .and_then(|c| c.last_update_time.as_deref()?.parse::<Timestamp>().ok())
            .filter(|_| !progressed);
        let Some(since) = last else {
            self.set_progressing_condition(true, "ReplicaSetUpdated", "", now);
            self.requeue_in(plan.progress_deadline);
            return;
        };
        let due =
            since + SignedDuration::try_from(plan.progress_deadline).unwrap_or(SignedDuration::MAX);
        if now < due {
            self.set_progressing_condition(true, "ReplicaSetUpdated", "", since);
            self.requeue_in(due.duration_since(now).unsigned_abs());
            return;
        }
        let secs = plan.progress_deadline.as_secs();
        let waiting = self.status.message.clone().unwrap_or_default();
        let message = format!("no progress for {secs}s (progressDeadlineSeconds) while {waiting}");
        self.set_progressing_condition(false, DEADLINE_REASON, &message, since);
        self.degraded(DEADLINE_REASON, &message);
        let canary = self
            .status
            .stable_rs
            .as_ref()
            .is_some_and(|s| Some(s) != self.status.current_pod_hash.as_ref());
        if plan.progress_deadline_abort && canary && !self.status.abort {
            self.status.abort = true;
            self.events
                .push((DEADLINE_REASON.into(), format!("{message}: aborting")));
            self.requeue_in(MIN_REQUEUE);
        }
    }

    /// The `Progressing` condition, its `lastUpdateTime` the last progress.
    fn set_progressing_condition(
        &mut self,
        ok: bool,
        reason: &str,
        message: &str,
        since: Timestamp,
    ) {
        self.condition(PROGRESSING, ok, reason, message);
        if let Some(c) = self
            .status
            .conditions
            .iter_mut()
            .find(|c| c.type_ == PROGRESSING)
        {
            c.last_update_time = Some(since.to_string());
        }
    }
}
