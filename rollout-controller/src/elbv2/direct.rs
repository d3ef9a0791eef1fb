//! Direct mode: weights read and set on a listener or rule the LB controller
//! does not own.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};
use rollout_core::types::AlbDirect;
use rollout_core::world::Observed;

use super::{AwsError, Elbv2, MAX_WEIGHT, api, weights_in};

impl Elbv2 {
    /// Direct mode: the weights on the configured listener or rule, and
    /// the targets of its two groups.
    pub async fn observe_direct(&self, d: &AlbDirect) -> Result<Observed, AwsError> {
        let key = direct_key(d);
        self.guarded(&key, async {
            let (canary, stable) = self.direct_target_groups(&key, d).await?;
            let action = self.direct_action(d).await?;
            let mut observed = Observed {
                load_balancer: None,
                weights: weights_in(&action, &canary.arn, &stable.arn),
                canary: Some(canary),
                stable: Some(stable),
                rule: Some(key.clone()),
                ..Default::default()
            };
            self.read_targets(&mut observed).await?;
            Ok(observed)
        })
        .await
    }

    /// Direct mode: forwards `canary_weight`% to the canary target group and
    /// the rest to stable, keeping the action's stickiness settings. Both
    /// target groups must exist.
    pub async fn set_direct(&self, d: &AlbDirect, canary_weight: i32) -> Result<(), AwsError> {
        let stable_weight = 100 - canary_weight;
        for w in [canary_weight, stable_weight] {
            if !(0..=MAX_WEIGHT).contains(&w) {
                return Err(AwsError::InvalidWeight(format!(
                    "{w} is outside 0–{MAX_WEIGHT}"
                )));
            }
        }
        let key = direct_key(d);
        self.guarded(&key, async {
            let (canary, stable) = self.direct_target_groups(&key, d).await?;
            let current = self.direct_action(d).await?;
            let group = |arn: &str, weight: i32| {
                TargetGroupTuple::builder()
                    .target_group_arn(arn)
                    .weight(weight)
                    .build()
            };
            let forward = ForwardActionConfig::builder()
                .target_groups(group(&canary.arn, canary_weight))
                .target_groups(group(&stable.arn, stable_weight))
                .set_target_group_stickiness_config(
                    current
                        .forward_config()
                        .and_then(|f| f.target_group_stickiness_config().cloned()),
                )
                .build();
            let action = Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(forward)
                .build();
            match (&d.rule_arn, &d.listener_arn) {
                (Some(rule), _) => {
                    self.client()
                        .await
                        .modify_rule()
                        .rule_arn(rule)
                        .actions(action)
                        .send()
                        .await
                        .map_err(api("ModifyRule"))?;
                }
                (None, Some(listener)) => {
                    self.client()
                        .await
                        .modify_listener()
                        .listener_arn(listener)
                        .default_actions(action)
                        .send()
                        .await
                        .map_err(api("ModifyListener"))?;
                }
                (None, None) => unreachable!("validated: listenerArn or ruleArn"),
            }
            Ok(())
        })
        .await
    }

    /// The forward action direct mode manages.
    pub(super) async fn direct_action(&self, d: &AlbDirect) -> Result<Action, AwsError> {
        let actions: Vec<Action> = match (&d.rule_arn, &d.listener_arn) {
            (Some(rule), _) => self
                .client()
                .await
                .describe_rules()
                .rule_arns(rule)
                .send()
                .await
                .map_err(api("DescribeRules"))?
                .rules()
                .first()
                .ok_or_else(|| AwsError::NotFound(format!("rule {rule} does not exist")))?
                .actions()
                .to_vec(),
            (None, Some(listener)) => self
                .client()
                .await
                .describe_listeners()
                .listener_arns(listener)
                .send()
                .await
                .map_err(api("DescribeListeners"))?
                .listeners()
                .first()
                .ok_or_else(|| AwsError::NotFound(format!("listener {listener} does not exist")))?
                .default_actions()
                .to_vec(),
            (None, None) => unreachable!("validated: listenerArn or ruleArn"),
        };
        actions
            .into_iter()
            .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
            .ok_or_else(|| AwsError::NotFound(format!("{} has no forward action", direct_key(d))))
    }
}

fn direct_key(d: &AlbDirect) -> String {
    d.rule_arn
        .clone()
        .or_else(|| d.listener_arn.clone())
        .unwrap_or_default()
}
