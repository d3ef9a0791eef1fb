//! AWS ECR: registry logins from `GetAuthorizationToken`, repositories ensured
//! with their settings, and manifest-only retags (`BatchGetImage` + `PutImage`).
//!
//! Credentials come from the standard AWS chain (env, profile, SSO, web
//! identity as GitHub OIDC and IRSA use). The API endpoint follows the SDK's
//! own overrides (`AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL`); the registry
//! endpoint is separate, see `commands::image`.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability};
use base64::Engine as _;
use futures::future::BoxFuture;

use crate::oci::auth::{Login, LoginSource, Secret};
use crate::oci::client::MANIFEST_TYPES;
use crate::oci::error::{ImmutableTag, RegistryError};
use crate::oci::layout::sha256_digest;

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
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
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

    /// Creates the repository, or brings an existing one to the settings.
    /// Returns what it did, for the log.
    pub async fn ensure_repository(
        &self,
        name: &str,
        settings: &RepoSettings,
    ) -> Result<Vec<String>, EcrError> {
        let mutability = if settings.immutable_tags {
            ImageTagMutability::Immutable
        } else {
            ImageTagMutability::Mutable
        };
        let policy = settings
            .lifecycle_policy
            .as_deref()
            .map(read_lifecycle_policy)
            .transpose()?;
        let scanning = ImageScanningConfiguration::builder()
            .scan_on_push(settings.scan_on_push)
            .build();
        let mut done = Vec::new();
        match self.repository(name).await? {
            None => {
                self.client
                    .create_repository()
                    .repository_name(name)
                    .image_tag_mutability(mutability)
                    .image_scanning_configuration(scanning)
                    .send()
                    .await
                    .map_err(|e| api_error("CreateRepository", e))?;
                done.push(format!("created repository {name}"));
            }
            Some(repo) => {
                if repo.image_tag_mutability() != Some(&mutability) {
                    self.client
                        .put_image_tag_mutability()
                        .repository_name(name)
                        .image_tag_mutability(mutability.clone())
                        .send()
                        .await
                        .map_err(|e| api_error("PutImageTagMutability", e))?;
                    done.push(format!("set tag mutability to {}", mutability.as_str()));
                }
                let scan = repo
                    .image_scanning_configuration()
                    .is_some_and(|c| c.scan_on_push());
                if scan != settings.scan_on_push {
                    self.client
                        .put_image_scanning_configuration()
                        .repository_name(name)
                        .image_scanning_configuration(scanning)
                        .send()
                        .await
                        .map_err(|e| api_error("PutImageScanningConfiguration", e))?;
                    done.push(format!("set scan on push to {}", settings.scan_on_push));
                }
            }
        }
        if let Some(policy) = policy {
            let current = match self
                .client
                .get_lifecycle_policy()
                .repository_name(name)
                .send()
                .await
            {
                Ok(out) => out.lifecycle_policy_text().map(str::to_owned),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_lifecycle_policy_not_found_exception()) =>
                {
                    None
                }
                Err(e) => return Err(api_error("GetLifecyclePolicy", e)),
            };
            let same = current
                .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
                .is_some_and(|c| c == policy);
            if !same {
                self.client
                    .put_lifecycle_policy()
                    .repository_name(name)
                    .lifecycle_policy_text(policy.to_string())
                    .send()
                    .await
                    .map_err(|e| api_error("PutLifecyclePolicy", e))?;
                done.push("set the lifecycle policy".to_owned());
            }
        }
        Ok(done)
    }

    async fn repository(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_ecr::types::Repository>, EcrError> {
        match self
            .client
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.repositories().first().cloned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_repository_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(api_error("DescribeRepositories", e)),
        }
    }

    /// Whether the repository refuses to move tags. Unknown (no permission to
    /// describe it, or it does not exist yet) counts as mutable: the registry
    /// still enforces immutability on push.
    pub async fn tags_immutable(&self, name: &str) -> bool {
        match self.repository(name).await {
            Ok(Some(repo)) => repo
                .image_tag_mutability()
                .is_some_and(|m| *m == ImageTagMutability::Immutable),
            Ok(None) => false,
            Err(e) => {
                tracing::debug!("cannot read the tag mutability of {name}: {e}");
                false
            }
        }
    }

    /// The manifest a tag points at, via the ECR API.
    pub async fn manifest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<(String, String)>, EcrError> {
        let out = self
            .client
            .batch_get_image()
            .repository_name(repository)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .set_accepted_media_types(Some(
                MANIFEST_TYPES.split(", ").map(str::to_owned).collect(),
            ))
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_repository_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(api_error("BatchGetImage", e)),
        };
        Ok(out.images().first().and_then(|image| {
            let manifest = image.image_manifest()?.to_owned();
            let media_type = image
                .image_manifest_media_type()
                .map(str::to_owned)
                .or_else(|| media_type_of(&manifest))?;
            Some((manifest, media_type))
        }))
    }

    /// Points `tag` at an existing manifest without moving any blob. A tag that
    /// already points there is left alone; an immutable tag elsewhere is an
    /// error naming both digests.
    pub async fn put_tag(
        &self,
        repository: &str,
        tag: &str,
        manifest: &str,
        media_type: &str,
    ) -> Result<bool, EcrError> {
        let result = self
            .client
            .put_image()
            .repository_name(repository)
            .image_tag(tag)
            .image_manifest(manifest)
            .image_manifest_media_type(media_type)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        let exists = err.as_service_error().is_some_and(|e| {
            // Real ECR says the tag exists; some stand-ins say the image exists.
            e.is_image_tag_already_exists_exception() || e.is_image_already_exists_exception()
        });
        if !exists {
            return Err(api_error("PutImage", err));
        }
        let wanted = sha256_digest(manifest.as_bytes());
        let existing = self
            .manifest(repository, tag)
            .await?
            .map(|(m, _)| sha256_digest(m.as_bytes()))
            .unwrap_or_else(|| "an unknown digest".to_owned());
        if existing == wanted {
            Ok(false)
        } else {
            Err(ImmutableTag {
                repository: repository.to_owned(),
                tag: tag.to_owned(),
                existing,
                wanted,
            }
            .into())
        }
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

fn media_type_of(manifest: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(manifest)
        .ok()?
        .get("mediaType")?
        .as_str()
        .map(str::to_owned)
}

fn read_lifecycle_policy(path: &Path) -> Result<serde_json::Value, EcrError> {
    let err = |what: String| EcrError::LifecyclePolicy {
        path: path.display().to_string(),
        what,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "line {} column {}: not JSON: {e}",
            e.line(),
            e.column()
        ))
    })?;
    if !value.get("rules").is_some_and(|r| r.is_array()) {
        return Err(err("expected an object with a \"rules\" array".into()));
    }
    Ok(value)
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
