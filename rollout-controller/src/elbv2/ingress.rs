//! Ingress mode: the load balancer the AWS Load Balancer Controller built for
//! an Ingress, found by its hostname, the rule forwarding to both target
//! groups, and the header routes' rules forwarding to the canary's.

use aws_sdk_elasticloadbalancingv2::types::{Action, Rule};
use rollout_core::alb::routes::HeaderCondition;
use rollout_core::types::AwsResource;
use rollout_core::world::{Observed, canonical};

use super::{AwsError, Elbv2, IngressTarget, api, normalise_hostname, weights_in};

impl Elbv2 {
    /// Ingress mode: the weights on the ALB the LB controller built for the
    /// Ingress, and the targets of its two groups.
    pub async fn observe_ingress(&self, t: &IngressTarget<'_>) -> Result<Observed, AwsError> {
        self.guarded(t.hostname, async {
            let lb = self.load_balancer(t.hostname).await?;
            let tag = |service: &str| format!("{}/{}-{service}:{}", t.namespace, t.ingress, t.port);
            let (canary_tag, stable_tag) = (tag(t.canary_service), tag(t.stable_service));
            let groups = self
                .tagged_target_groups(t.hostname, &lb.arn, &[&canary_tag, &stable_tag])
                .await?;
            let canary = groups.get(&canary_tag).cloned();
            let stable = groups.get(&stable_tag).cloned();
            let mut observed = Observed {
                load_balancer: Some(lb.clone()),
                canary: canary.clone(),
                stable: stable.clone(),
                ..Default::default()
            };
            self.read_targets(&mut observed).await?;
            let (Some(canary), Some(stable)) = (canary, stable) else {
                return Ok(observed);
            };
            let rules = self.rules_to(&lb.arn, &canary.arn, &stable.arn).await?;
            match rules.weighted {
                Some((rule, weights)) => {
                    observed.rule = Some(rule);
                    observed.weights = Some(weights);
                }
                // The groups may have been replaced: look them up afresh next time.
                None => self.forget(t.hostname),
            }
            observed.header_routes_anywhere = rules.header_routes.clone();
            observed.header_routes = rules.header_routes;
            Ok(observed)
        })
        .await
    }

    /// The load balancer whose DNS name is `hostname` (cached).
    pub(super) async fn load_balancer(&self, hostname: &str) -> Result<AwsResource, AwsError> {
        let wanted = normalise_hostname(hostname);
        if let Some(lb) = self.load_balancers.lock().unwrap().get(&wanted) {
            return Ok(lb.clone());
        }
        let mut pages = self
            .client()
            .await
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send();
        while let Some(lb) = pages.next().await {
            let lb = lb.map_err(api("DescribeLoadBalancers"))?;
            let dns = lb.dns_name().unwrap_or_default().to_ascii_lowercase();
            if dns == wanted {
                let found = AwsResource {
                    name: lb.load_balancer_name().unwrap_or_default().to_string(),
                    arn: lb.load_balancer_arn().unwrap_or_default().to_string(),
                };
                self.load_balancers
                    .lock()
                    .unwrap()
                    .insert(wanted, found.clone());
                return Ok(found);
            }
        }
        Err(AwsError::NotFound(format!(
            "no load balancer has the DNS name {hostname}"
        )))
    }

    /// The listener rules (or default action) forwarding to the two target
    /// groups: the weighted one, and the header routes' (to the canary
    /// group alone).
    pub(super) async fn rules_to(
        &self,
        lb: &str,
        canary: &str,
        stable: &str,
    ) -> Result<RulesTo, AwsError> {
        let mut found = RulesTo::default();
        let mut listeners = self
            .client()
            .await
            .describe_listeners()
            .load_balancer_arn(lb)
            .into_paginator()
            .items()
            .send();
        while let Some(listener) = listeners.next().await {
            let listener = listener.map_err(api("DescribeListeners"))?;
            let Some(listener_arn) = listener.listener_arn() else {
                continue;
            };
            let mut rules = self
                .client()
                .await
                .describe_rules()
                .listener_arn(listener_arn)
                .into_paginator()
                .items()
                .send();
            while let Some(rule) = rules.next().await {
                let rule = rule.map_err(api("DescribeRules"))?;
                for action in rule.actions() {
                    if let Some(w) = weights_in(action, canary, stable) {
                        let arn = rule.rule_arn().unwrap_or_default().to_string();
                        found.weighted.get_or_insert((arn, w));
                    } else if forwards_only_to(action, canary) {
                        found.header_routes.push(header_conditions(&rule));
                    }
                }
            }
        }
        Ok(found)
    }
}

#[derive(Default)]
pub(super) struct RulesTo {
    /// The rule with the weights, and its `(canary, stable)` weights.
    pub weighted: Option<(String, (i32, i32))>,
    /// Each rule to the canary group alone: its http-header conditions.
    pub header_routes: Vec<Vec<HeaderCondition>>,
}

/// Whether `action` forwards to `group` and no other.
fn forwards_only_to(action: &Action, group: &str) -> bool {
    let groups: Vec<&str> = match action.forward_config() {
        Some(f) => f
            .target_groups()
            .iter()
            .filter_map(|g| g.target_group_arn())
            .collect(),
        None => action.target_group_arn().into_iter().collect(),
    };
    groups == [group]
}

/// A rule's http-header conditions, `canonical`.
fn header_conditions(rule: &Rule) -> Vec<HeaderCondition> {
    let conditions: Vec<HeaderCondition> = rule
        .conditions()
        .iter()
        .filter(|c| c.field() == Some("http-header"))
        .filter_map(|c| {
            let h = c.http_header_config()?;
            Some(HeaderCondition::http_header(
                h.http_header_name()?,
                h.values().to_vec(),
            ))
        })
        .collect();
    canonical(&conditions)
}
