//! Ephemeral pod metadata (Argo's `canaryMetadata` / `stableMetadata`):
//! labels and annotations that follow a ReplicaSet's role, set on its pod
//! template and on the pods it already runs, and moved when the canary
//! becomes stable.

use super::*;

impl Decider<'_> {
    /// The metadata for revision `hash` in its current role: stable (or
    /// becoming the first stable), canary, or none for an old revision.
    pub(super) fn role_metadata<'p>(&self, plan: &'p Plan, hash: &str) -> Option<&'p PodMetadata> {
        match self.status.stable_rs.as_deref() {
            None => Some(&plan.stable_metadata),
            Some(stable) if stable == hash => Some(&plan.stable_metadata),
            Some(_) if self.status.current_pod_hash.as_deref() == Some(hash) => {
                Some(&plan.canary_metadata)
            }
            Some(_) => None,
        }
    }

    /// Moves every running ReplicaSet's pods to its role's metadata; one
    /// this decision scales up from zero (going back to an earlier
    /// revision) gets it before its scale-up, so no pod starts with the
    /// role it had before.
    pub(super) fn sync_pod_metadata(&mut self, plan: &Plan) {
        let world = self.world;
        for rs in &world.replica_sets {
            let Some(want) = self.role_metadata(plan, &rs.hash) else {
                continue;
            };
            let scaled_up = self.actions.iter().position(|a| {
                matches!(a, Action::ScaleReplicaSet { name, replicas } if *name == rs.name && *replicas > 0)
            });
            if (rs.replicas > 0 || scaled_up.is_some()) && rs.pod_metadata != *want {
                let set = Action::SetPodMetadata {
                    name: rs.name.clone(),
                    hash: rs.hash.clone(),
                    from: rs.pod_metadata.clone(),
                    to: want.clone(),
                };
                match scaled_up {
                    Some(at) if rs.replicas == 0 => self.actions.insert(at, set),
                    _ => self.actions.push(set),
                }
            }
        }
    }
}
