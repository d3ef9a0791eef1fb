//! Which target groups carry the weights: those the LB controller tagged for
//! the Ingress's Services, or those a direct-mode Rollout names; cached.

use std::collections::HashMap;

use rollout_core::types::{AlbDirect, AwsResource};

use super::{AwsError, Elbv2, RESOURCE_TAG, TAGS_PER_CALL, api};

impl Elbv2 {
    /// The target groups of `lb` carrying each resource tag (cached per tag).
    pub(super) async fn tagged_target_groups(
        &self,
        key: &str,
        lb: &str,
        tags: &[&str],
    ) -> Result<HashMap<String, AwsResource>, AwsError> {
        let mut found: HashMap<String, AwsResource> = {
            let cache = self.target_groups.lock().unwrap();
            tags.iter()
                .filter_map(|t| {
                    let group = cache.get(&(key.to_string(), t.to_string()))?;
                    Some((t.to_string(), group.clone()))
                })
                .collect()
        };
        if found.len() == tags.len() {
            return Ok(found);
        }
        // In API order, so the lookups are reproducible.
        let mut names: Vec<(String, String)> = Vec::new();
        let mut pages = self
            .client()
            .await
            .describe_target_groups()
            .load_balancer_arn(lb)
            .into_paginator()
            .items()
            .send();
        while let Some(tg) = pages.next().await {
            let tg = tg.map_err(api("DescribeTargetGroups"))?;
            names.push((
                tg.target_group_arn().unwrap_or_default().to_string(),
                tg.target_group_name().unwrap_or_default().to_string(),
            ));
        }
        let arns: Vec<String> = names.iter().map(|(arn, _)| arn.clone()).collect();
        for chunk in arns.chunks(TAGS_PER_CALL) {
            let out = self
                .client()
                .await
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(api("DescribeTags"))?;
            for description in out.tag_descriptions() {
                let arn = description.resource_arn().unwrap_or_default();
                let tag = description
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(RESOURCE_TAG))
                    .and_then(|t| t.value());
                if let Some(tag) = tag.filter(|t| tags.contains(t)) {
                    let group = AwsResource {
                        name: names
                            .iter()
                            .find(|(a, _)| a == arn)
                            .map(|(_, n)| n.clone())
                            .unwrap_or_default(),
                        arn: arn.to_string(),
                    };
                    self.target_groups
                        .lock()
                        .unwrap()
                        .insert((key.to_string(), tag.to_string()), group.clone());
                    found.insert(tag.to_string(), group);
                }
            }
            if found.len() == tags.len() {
                break;
            }
        }
        Ok(found)
    }

    /// Both direct-mode target groups, which must exist.
    pub(super) async fn direct_target_groups(
        &self,
        key: &str,
        d: &AlbDirect,
    ) -> Result<(AwsResource, AwsResource), AwsError> {
        let cached = {
            let cache = self.target_groups.lock().unwrap();
            let get = |arn: &str| cache.get(&(key.to_string(), arn.to_string())).cloned();
            (
                get(&d.canary_target_group_arn),
                get(&d.stable_target_group_arn),
            )
        };
        if let (Some(c), Some(s)) = cached {
            return Ok((c, s));
        }
        let mut found = HashMap::new();
        for arn in [&d.canary_target_group_arn, &d.stable_target_group_arn] {
            let out = self
                .client()
                .await
                .describe_target_groups()
                .target_group_arns(arn)
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error()
                        .is_some_and(|s| s.is_target_group_not_found_exception())
                    {
                        AwsError::NotFound(format!("target group {arn} does not exist"))
                    } else {
                        api("DescribeTargetGroups")(e)
                    }
                })?;
            let tg = out
                .target_groups()
                .first()
                .ok_or_else(|| AwsError::NotFound(format!("target group {arn} does not exist")))?;
            found.insert(
                arn.clone(),
                AwsResource {
                    name: tg.target_group_name().unwrap_or_default().to_string(),
                    arn: arn.clone(),
                },
            );
        }
        self.target_groups.lock().unwrap().extend(
            found
                .iter()
                .map(|(arn, group)| ((key.to_string(), arn.clone()), group.clone())),
        );
        Ok((
            found[&d.canary_target_group_arn].clone(),
            found[&d.stable_target_group_arn].clone(),
        ))
    }
}
