//! Pauses: a step's pause (timed or waiting for a human), and the status
//! that says so.

use super::*;

impl Decider<'_> {
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
}
