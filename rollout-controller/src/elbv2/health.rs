//! Target health: which pods each target group holds, and in which state
//! (`initial`, `healthy`, `draining`, …), for the traffic gates.

use aws_sdk_elasticloadbalancingv2::types::TargetHealthDescription;
use rollout_core::world::{Observed, TargetState, TargetView};

use super::{AwsError, Elbv2, api};

impl Elbv2 {
    /// Fills in the targets of the target groups `observed` found.
    pub(super) async fn read_targets(&self, observed: &mut Observed) -> Result<(), AwsError> {
        if let Some(group) = &observed.stable {
            observed.stable_targets = Some(self.targets(&group.arn).await?);
        }
        if let Some(group) = &observed.canary {
            observed.canary_targets = Some(self.targets(&group.arn).await?);
        }
        Ok(())
    }

    /// Every target of `group` and its state (one call: not paginated).
    async fn targets(&self, group: &str) -> Result<Vec<TargetView>, AwsError> {
        let out = self
            .client()
            .await
            .describe_target_health()
            .target_group_arn(group)
            .send()
            .await
            .map_err(api("DescribeTargetHealth"))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(target)
            .collect())
    }
}

fn target(d: &TargetHealthDescription) -> Option<TargetView> {
    let state = d
        .target_health()
        .and_then(|h| h.state())
        .map_or(TargetState::Unavailable, |s| TargetState::parse(s.as_str()));
    Some(TargetView {
        id: d.target()?.id()?.to_string(),
        state,
    })
}
