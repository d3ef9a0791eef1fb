//! A canary without traffic routing (Argo's basic canary): the weight is
//! the canary's share of the pods, so the stable shrinks as the canary
//! grows, each move bounded by `maxSurge` (pods above `replicas`) and
//! `maxUnavailable` (available pods below it). The stable keeps at least
//! one pod while its Service selects it.

use super::*;

impl Decider<'_> {
    /// Moves the canary `hash` towards `canary_want` pods and the stable
    /// towards `stable_want`, as far as the bounds allow; true once both
    /// are there and the canary's pods are available.
    pub(super) fn scale_basic(
        &mut self,
        plan: &Plan,
        stable: &str,
        hash: &str,
        canary_want: i32,
        stable_want: i32,
    ) -> bool {
        let count = |rs: Option<&ReplicaSetView>| rs.map_or((0, 0), |r| (r.replicas, r.available));
        let (canary_now, canary_available) = count(self.rs(hash));
        let (stable_now, stable_available) = count(self.rs(stable));
        // The stable's last pod may push the total past maxSurge.
        let limit = (plan.replicas + plan.max_surge).max(canary_want + stable_want);
        let room_up = |others: i32, own: i32| (limit - others - own).max(0);
        // Only pods beyond `replicas - maxUnavailable` available may go.
        let mut spare =
            (canary_available + stable_available - (plan.replicas - plan.max_unavailable)).max(0);
        let canary_target = if canary_want > canary_now {
            canary_want.min(canary_now + room_up(stable_now, canary_now))
        } else {
            let target = canary_want.max(canary_now - spare);
            spare -= canary_now - target;
            target
        };
        let stable_target = if stable_want < stable_now {
            stable_want.max(stable_now - spare)
        } else {
            stable_want.min(stable_now + room_up(canary_target, stable_now))
        };
        self.ensure_replicas(plan, hash, canary_target);
        self.ensure_replicas(plan, stable, stable_target);
        canary_target == canary_want
            && stable_target == stable_want
            && canary_available >= canary_want
    }
}
