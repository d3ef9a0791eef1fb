//! Status: phase, message and conditions, and when to look again.

use super::*;

impl Decider<'_> {
    pub(super) fn requeue_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    pub(super) fn healthy(&mut self) {
        self.status.phase = Some(Phase::Healthy);
        self.status.message = None;
        self.condition("Paused", false, "Healthy", "");
        self.condition("Healthy", true, "Healthy", "");
    }

    /// Progressing, saying what it waits for (a traffic gate's wait named).
    pub(super) fn progressing(&mut self, message: &str) {
        let message = match self.weight_gate_message() {
            Some(gate) => format!("{message}: waiting for the ALB: {gate}"),
            None => message.to_string(),
        };
        self.status.phase = Some(Phase::Progressing);
        self.condition("Healthy", false, "Progressing", &message);
        self.status.message = Some(message);
    }

    pub(super) fn degraded(&mut self, reason: &str, message: &str) {
        self.status.phase = Some(Phase::Degraded);
        self.status.message = Some(format!("{reason}: {message}"));
        self.condition("Healthy", false, reason, message);
    }

    pub(super) fn invalid(&mut self, message: &str) {
        self.condition("InvalidSpec", true, "InvalidSpec", message);
        self.degraded("InvalidSpec", message);
    }

    /// Sets a condition, keeping its transition time when the status is unchanged.
    pub(super) fn condition(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let status = if status { "True" } else { "False" };
        let existing = self.status.conditions.iter_mut().find(|c| c.type_ == type_);
        // An absent False condition stays absent: fewer writes for the common case.
        if existing.is_none() && status == "False" {
            return;
        }
        let now = self.world.now.to_string();
        let new = Condition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: (!message.is_empty()).then(|| message.to_string()),
            last_transition_time: Some(now),
            last_update_time: None,
        };
        match existing {
            Some(c) if c.status == new.status => {
                c.reason = new.reason;
                c.message = new.message;
            }
            Some(c) => *c = new,
            None => self.status.conditions.push(new),
        }
    }
}
