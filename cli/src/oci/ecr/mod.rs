//! AWS ECR: registry logins from `GetAuthorizationToken`, repositories ensured
//! with their settings, and manifest-only retags (`BatchGetImage` + `PutImage`).
//!
//! Credentials come from the standard AWS chain (env, profile, SSO, web
//! identity as GitHub OIDC and IRSA use). The API endpoint follows the SDK's
//! own overrides (`AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL`); the registry
//! endpoint is separate, see `oci::destination`.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use base64::Engine as _;
use futures::future::BoxFuture;

use crate::oci::auth::{Login, LoginSource, Secret};
use crate::oci::error::{ImmutableTag, RegistryError};

mod images;
mod repository;

#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error("ECR {op}: {detail}")]
    Api { op: &'static str, detail: String },
    #[error(transparent)]
    ImmutableTag(#[from] ImmutableTag),
    #[error("{path}: {what}")]
    LifecyclePolicy { path: String, what: String },
}

fn api_error<E>(op: &'static str, e: E) -> EcrError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    EcrError::Api {
        op,
        detail: match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            _ => DisplayErrorContext(&e).to_string(),
        },
    }
}

/// An ECR registry host: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrHost {
    pub account: String,
    pub region: String,
}

impl EcrHost {
    pub fn parse(host: &str) -> Option<EcrHost> {
        let mut parts = host.split('.');
        let account = parts.next()?;
        let (dkr, ecr, region) = (parts.next()?, parts.next()?, parts.next()?);
        let rest: Vec<&str> = parts.collect();
        let known_suffix = matches!(
            rest.as_slice(),
            ["amazonaws", "com"] | ["amazonaws", "com", "cn"]
        );
        let ok = account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && dkr == "dkr"
            && (ecr == "ecr" || ecr == "ecr-fips")
            && !region.is_empty()
            && known_suffix;
        ok.then(|| EcrHost {
            account: account.to_owned(),
            region: region.to_owned(),
        })
    }
}

/// The repository settings `--create-repo` ensures.
#[derive(Debug, Clone, Default)]
pub struct RepoSettings {
    pub immutable_tags: bool,
    pub scan_on_push: bool,
    pub lifecycle_policy: Option<std::path::PathBuf>,
}

pub struct Ecr {
    client: aws_sdk_ecr::Client,
    token: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    login: Login,
    proxy_endpoint: Option<String>,
    expires_at: Option<SystemTime>,
    fetched: Instant,
}

impl Ecr {
    /// A client on the standard credential chain; `region` wins over the
    /// configured one when the repository URI names it.
    pub async fn new(region: Option<&str>) -> Ecr {
        let http = rollout_metrics::aws_http_client();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_owned()));
        }
        let config = loader.load().await;
        Ecr {
            client: aws_sdk_ecr::Client::new(&config),
            token: Mutex::new(None),
        }
    }

    /// The registry host of the caller's default registry (for bare names).
    pub async fn default_registry_host(&self) -> Result<String, EcrError> {
        self.login_token().await?;
        let token = self.token.lock().expect("lock");
        let endpoint = token
            .as_ref()
            .and_then(|t| t.proxy_endpoint.clone())
            .ok_or(EcrError::Api {
                op: "GetAuthorizationToken",
                detail: "the answer names no registry endpoint".into(),
            })?;
        Ok(endpoint
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned())
    }

    /// The registry login, cached until shortly before it expires.
    async fn login_token(&self) -> Result<Login, EcrError> {
        if let Some(t) = self.token.lock().expect("lock").as_ref() {
            let fresh = t
                .expires_at
                .is_none_or(|at| at > SystemTime::now() + Duration::from_secs(300));
            // A token that arrives already "expired" (clock skew, stand-ins) is
            // still used rather than fetched in a loop.
            if fresh || t.fetched.elapsed() < Duration::from_secs(60) {
                return Ok(t.login.clone());
            }
        }
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| api_error("GetAuthorizationToken", e))?;
        let data = out.authorization_data().first().ok_or(EcrError::Api {
            op: "GetAuthorizationToken",
            detail: "no authorization data in the answer".into(),
        })?;
        let bad = |what: &str| EcrError::Api {
            op: "GetAuthorizationToken",
            detail: format!("the token is {what}"),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.authorization_token().ok_or_else(|| bad("missing"))?)
            .map_err(|_| bad("not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("not text"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad("not USER:PASSWORD"))?;
        let login = Login {
            username: username.to_owned(),
            password: Secret::new(password),
        };
        *self.token.lock().expect("lock") = Some(CachedToken {
            login: login.clone(),
            proxy_endpoint: data.proxy_endpoint().map(str::to_owned),
            expires_at: data
                .expires_at()
                .and_then(|t| SystemTime::try_from(*t).ok()),
            fetched: Instant::now(),
        });
        Ok(login)
    }
}

impl LoginSource for Ecr {
    fn login(&self) -> BoxFuture<'_, Result<Option<Login>, RegistryError>> {
        Box::pin(async move {
            self.login_token()
                .await
                .map(Some)
                .map_err(|e| RegistryError::Login(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ecr_hosts() {
        assert_eq!(
            EcrHost::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some(EcrHost {
                account: "123456789012".into(),
                region: "eu-west-1".into()
            })
        );
        assert!(EcrHost::parse("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com").is_some());
        assert!(EcrHost::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").is_some());
        for other in [
            "ghcr.io",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.example.com",
            "127.0.0.1:5000",
        ] {
            assert_eq!(EcrHost::parse(other), None, "{other}");
        }
    }
}
