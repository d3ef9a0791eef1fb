//! The load balancer as AWS sees it (ELBv2 API): the weights an ALB really
//! applies, found from an Ingress's hostname and the AWS Load Balancer
//! Controller's tags, and — in direct mode — weights set on a listener or
//! rule the LB controller does not own.
//!
//! API limits are respected: DescribeTags takes at most 20 ARNs, every list
//! is paginated, the load balancer and target groups found are cached, and
//! after a failure (throttling included, once the SDK's own retries are
//! spent) calls for that load balancer back off exponentially.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::error::DisplayErrorContext;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};
use tokio::sync::OnceCell;

use rollout_core::types::{AlbDirect, AwsResource};
use rollout_core::world::Observed;

/// The LB controller's tag on the target groups it creates:
/// `<namespace>/<ingress>-<service>:<port>`.
pub const RESOURCE_TAG: &str = "ingress.k8s.aws/resource";
/// DescribeTags accepts at most this many ARNs per call.
const TAGS_PER_CALL: usize = 20;
/// ALB target group weights are 0–999.
const MAX_WEIGHT: i32 = 999;
const BACKOFF_MIN: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Which Ingress-managed target groups to look for.
pub struct IngressTarget<'a> {
    pub hostname: &'a str,
    pub namespace: &'a str,
    pub ingress: &'a str,
    pub canary_service: &'a str,
    pub stable_service: &'a str,
    pub port: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("ELBv2 {call}: {message}")]
    Api { call: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("ELBv2 calls for {key} back off for {}s after: {last}", wait.as_secs())]
    BackingOff {
        key: String,
        wait: Duration,
        last: String,
    },
    #[error("invalid weights: {0}")]
    InvalidWeight(String),
}

fn api<E>(call: &'static str) -> impl FnOnce(E) -> AwsError
where
    E: std::error::Error,
{
    move |e| AwsError::Api {
        call,
        message: DisplayErrorContext(&e).to_string(),
    }
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last: String,
}

pub struct Elbv2 {
    sdk: OnceCell<aws_config::SdkConfig>,
    client: OnceCell<Client>,
    /// Hostname → load balancer.
    load_balancers: Mutex<HashMap<String, AwsResource>>,
    /// (hostname or direct-mode ARN, resource tag or target group ARN) →
    /// target group; scoped so a failure forgets only what it concerns.
    target_groups: Mutex<HashMap<(String, String), AwsResource>>,
    backoff: Mutex<HashMap<String, Backoff>>,
}

impl Elbv2 {
    /// A client on the standard credential chain (IRSA web identity in a
    /// cluster), built on first use so that nothing asks AWS (not even for
    /// the region) until a Rollout needs it;
    /// `AWS_ENDPOINT_URL[_ELASTIC_LOAD_BALANCING_V2]` overrides the endpoint.
    pub fn from_env() -> Elbv2 {
        Elbv2::with_client(OnceCell::new())
    }

    pub fn new(client: Client) -> Elbv2 {
        Elbv2::with_client(OnceCell::new_with(Some(client)))
    }

    fn with_client(client: OnceCell<Client>) -> Elbv2 {
        Elbv2 {
            sdk: OnceCell::new(),
            client,
            load_balancers: Mutex::default(),
            target_groups: Mutex::default(),
            backoff: Mutex::default(),
        }
    }

    /// The SDK configuration of the standard chain, loaded once.
    async fn sdk_config(&self) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| {
                aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http_client())
                    .load()
            })
            .await
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async { Client::new(self.sdk_config().await) })
            .await
    }

    /// Whether the standard chain yields credentials (verification is on
    /// by default only then); the client built later shares its
    /// configuration. The SDK's own reasons are logged at debug: off AWS
    /// they are kilobytes of expected failures.
    pub async fn credentials_available(&self) -> bool {
        use aws_sdk_elasticloadbalancingv2::config::ProvideCredentials;
        let Some(provider) = self.sdk_config().await.credentials_provider() else {
            return false;
        };
        match provider.provide_credentials().await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = ?e, "no AWS credentials");
                false
            }
        }
    }

    /// Ingress mode: the weights on the ALB the LB controller built for the Ingress.
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
            let (Some(canary), Some(stable)) = (canary, stable) else {
                return Ok(observed);
            };
            match self
                .forwarding_rule(&lb.arn, &canary.arn, &stable.arn)
                .await?
            {
                Some((rule, weights)) => {
                    observed.rule = Some(rule);
                    observed.weights = Some(weights);
                }
                // The groups may have been replaced: look them up afresh next time.
                None => self.forget(t.hostname),
            }
            Ok(observed)
        })
        .await
    }

    /// Direct mode: the weights on the configured listener or rule.
    pub async fn observe_direct(&self, d: &AlbDirect) -> Result<Observed, AwsError> {
        let key = direct_key(d);
        self.guarded(&key, async {
            let (canary, stable) = self.direct_target_groups(&key, d).await?;
            let action = self.direct_action(d).await?;
            Ok(Observed {
                load_balancer: None,
                weights: weights_in(&action, &canary.arn, &stable.arn),
                canary: Some(canary),
                stable: Some(stable),
                rule: Some(key.clone()),
            })
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

    /// Runs `call` unless `key` is backing off; records its failure or success.
    async fn guarded<T>(
        &self,
        key: &str,
        call: impl std::future::Future<Output = Result<T, AwsError>>,
    ) -> Result<T, AwsError> {
        if let Some(b) = self.backoff.lock().unwrap().get(key)
            && let Some(until) = b.until
        {
            let now = Instant::now();
            if now < until {
                return Err(AwsError::BackingOff {
                    key: key.to_string(),
                    wait: until - now,
                    last: b.last.clone(),
                });
            }
        }
        let result = call.await;
        let mut backoff = self.backoff.lock().unwrap();
        match &result {
            Ok(_) => {
                backoff.remove(key);
            }
            Err(e) => {
                let b = backoff.entry(key.to_string()).or_default();
                b.failures += 1;
                let wait = BACKOFF_MIN
                    .saturating_mul(1 << (b.failures - 1).min(10))
                    .min(BACKOFF_MAX);
                b.until = Some(Instant::now() + wait);
                b.last = e.to_string();
                // A vanished load balancer or target group is looked up afresh.
                self.forget(key);
            }
        }
        result
    }

    /// Drops what is cached for `key` (a hostname or a direct-mode ARN).
    fn forget(&self, key: &str) {
        self.load_balancers
            .lock()
            .unwrap()
            .remove(&normalise_hostname(key));
        self.target_groups
            .lock()
            .unwrap()
            .retain(|(k, _), _| k != key);
    }

    /// The load balancer whose DNS name is `hostname` (cached).
    async fn load_balancer(&self, hostname: &str) -> Result<AwsResource, AwsError> {
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

    /// The target groups of `lb` carrying each resource tag (cached per tag).
    async fn tagged_target_groups(
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

    /// The listener rule (or default action) forwarding to both target
    /// groups, and its `(canary, stable)` weights.
    async fn forwarding_rule(
        &self,
        lb: &str,
        canary: &str,
        stable: &str,
    ) -> Result<Option<(String, (i32, i32))>, AwsError> {
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
                        return Ok(Some((rule.rule_arn().unwrap_or_default().to_string(), w)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Both direct-mode target groups, which must exist.
    async fn direct_target_groups(
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

    /// The forward action direct mode manages.
    async fn direct_action(&self, d: &AlbDirect) -> Result<Action, AwsError> {
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

/// The SDK's HTTPS client on ring, kube's crypto provider (the default
/// one would build aws-lc-rs).
pub fn http_client() -> aws_sdk_elasticloadbalancingv2::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn normalise_hostname(hostname: &str) -> String {
    hostname.trim_end_matches('.').to_ascii_lowercase()
}

fn direct_key(d: &AlbDirect) -> String {
    d.rule_arn
        .clone()
        .or_else(|| d.listener_arn.clone())
        .unwrap_or_default()
}

/// `(canary, stable)` weights if `action` forwards to both target groups.
pub fn weights_in(action: &Action, canary: &str, stable: &str) -> Option<(i32, i32)> {
    let groups = action.forward_config()?.target_groups();
    let weight = |arn: &str| {
        groups
            .iter()
            .find(|g| g.target_group_arn() == Some(arn))
            .map(|g| g.weight().unwrap_or(1))
    };
    Some((weight(canary)?, weight(stable)?))
}
