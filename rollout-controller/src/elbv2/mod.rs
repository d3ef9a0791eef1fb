//! The load balancer as AWS sees it (ELBv2 API): the weights an ALB really
//! applies, found from an Ingress's hostname and the AWS Load Balancer
//! Controller's tags, and — in direct mode — weights set on a listener or
//! rule the LB controller does not own.
//!
//! API limits are respected: DescribeTags takes at most 20 ARNs, every list
//! is paginated, the load balancer and target groups found are cached, and
//! after a failure (throttling included, once the SDK's own retries are
//! spent) calls for that load balancer back off exponentially.
//!
//! Here: the client, its caches and the backoff; `ingress` and `direct`: the
//! two modes; `target_groups`: which target groups carry the weights;
//! `health`: the targets in them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::error::DisplayErrorContext;
use aws_sdk_elasticloadbalancingv2::types::Action;
use tokio::sync::OnceCell;

use rollout_core::types::AwsResource;

mod direct;
mod health;
mod ingress;
mod target_groups;

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
                    .http_client(rollout_metrics::aws_http_client())
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
}

fn normalise_hostname(hostname: &str) -> String {
    hostname.trim_end_matches('.').to_ascii_lowercase()
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
