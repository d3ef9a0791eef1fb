//! `workloadRef.scaleDown`: what happens to the Deployment a Rollout took
//! its pod template from. `onsuccess` scales it to zero once the Rollout
//! is Healthy; `progressively` scales it down as the Rollout's first
//! ReplicaSet becomes available, and back up if that first rollout fails
//! (Degraded). Later releases change the Deployment's template but never
//! its pods again: scaling it up then would start the new, unproven
//! version outside the canary.

use super::*;
use crate::types::WorkloadScaleDown;

impl Decider<'_> {
    pub(super) fn scale_workload(&mut self, plan: &Plan) {
        let (Some(workload), Some(deployment)) = (&plan.workload, &self.world.workload) else {
            return;
        };
        let healthy = self.status.phase == Some(Phase::Healthy);
        let want = match workload.scale_down {
            WorkloadScaleDown::Never => return,
            WorkloadScaleDown::OnSuccess if healthy => 0,
            WorkloadScaleDown::OnSuccess => return,
            WorkloadScaleDown::Progressively => match &self.status.stable_rs {
                Some(_) => 0,
                None if self.status.phase == Some(Phase::Degraded) => plan.replicas,
                None => {
                    let available = self.status.available_replicas.unwrap_or(0);
                    // Only ever down while migrating: a Deployment someone
                    // scaled to zero stays there.
                    deployment.replicas.min((plan.replicas - available).max(0))
                }
            },
        };
        if deployment.replicas != want {
            self.actions.push(Action::ScaleDeployment {
                name: deployment.name.clone(),
                replicas: want,
            });
        }
    }
}
