//! GitHub's REST and GraphQL APIs, through octocrab: authentication (a
//! token, or a GitHub App's installation token), pull requests, refs,
//! file contents and the `createCommitOnBranch` mutation.
//!
//! octocrab carries the requests: auth headers, the App JWT and token
//! exchange, TLS, and its rate-limit retry (which waits out `retry-after`
//! and `x-ratelimit-reset`). Responses are read into the few fields gantry
//! uses, and every failure becomes an [`ApiError`] saying what was asked,
//! what GitHub answered and what to do about it. Tokens are only handed to
//! octocrab (which marks the header sensitive) and to git; never printed.
//!
//! Here: repositories, auth, errors and the connection; `pulls`,
//! `branches` and `commits`: the calls.

use std::sync::Arc;

use http::StatusCode;
use octocrab::Octocrab;
use octocrab::secrecy::{ExposeSecret as _, SecretString};
use octocrab::service::middleware::retry::{RateLimitMetrics, RetryConfig};
use serde::Deserialize;
use serde_json::Value;

mod branches;
mod commits;
mod pulls;

/// `owner/name` of a repository on GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    /// `owner/name`.
    pub fn parse(s: &str) -> Option<Repo> {
        let (owner, name) = s.trim().split_once('/')?;
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        (valid(owner) && valid(name)).then(|| Repo {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    /// The repository a git remote URL points at, for the URL forms GitHub
    /// hands out: `https://HOST/OWNER/NAME(.git)`, `git@HOST:OWNER/NAME(.git)`,
    /// `ssh://git@HOST/OWNER/NAME(.git)`.
    pub fn from_remote_url(url: &str) -> Option<Repo> {
        let path = if let Some((_, rest)) = url.split_once("://") {
            if url.starts_with("file://") {
                return None;
            }
            rest.split_once('/')?.1
        } else {
            let (host, path) = url.split_once(':')?;
            if host.contains('/') {
                return None;
            }
            path
        };
        let path = path.trim_end_matches('/').trim_end_matches(".git");
        Repo::parse(path)
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// How to authenticate.
pub enum Auth {
    Token(SecretString),
    /// A GitHub App: its id and RSA private key (PEM), exchanged for an
    /// installation token of the repository's installation.
    App {
        id: u64,
        private_key: SecretString,
    },
}

impl Auth {
    /// `GITHUB_TOKEN`, then `GH_TOKEN` (as the gh CLI reads them).
    pub fn token_from_env() -> Option<Auth> {
        ["GITHUB_TOKEN", "GH_TOKEN"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|t| !t.trim().is_empty()))
            .map(|t| Auth::Token(SecretString::from(t.trim().to_string())))
    }
}

pub struct Settings {
    /// The REST root: `https://api.github.com`, or `https://HOST/api/v3` on
    /// GitHub Enterprise Server.
    pub api_url: String,
    pub repo: Repo,
    pub auth: Auth,
}

/// A failed GitHub call: what was asked and what GitHub answered.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct ApiError {
    pub what: String,
    pub status: Option<u16>,
    /// GraphQL's error `type` (e.g. `STALE_DATA`).
    pub kind: Option<String>,
    pub detail: String,
}

impl ApiError {
    fn config(what: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            what: what.to_string(),
            status: None,
            kind: None,
            detail: detail.into(),
        }
    }

    /// `createCommitOnBranch`'s optimistic lock failed: the branch moved.
    pub fn is_stale_head(&self) -> bool {
        self.kind.as_deref() == Some("STALE_DATA")
            || self.detail.contains("Expected branch to point to")
    }

    fn status(what: &str, repo: &Repo, e: &octocrab::GitHubError) -> ApiError {
        let message = e.message.trim();
        let mut details: Vec<String> = e
            .errors
            .iter()
            .flatten()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                v => v
                    .get("message")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .or_else(|| {
                        let field = v.get("field").and_then(Value::as_str)?;
                        let code = v.get("code").and_then(Value::as_str)?;
                        Some(format!("{field} {code}"))
                    }),
            })
            .collect();
        details.dedup();
        let said = if details.is_empty() {
            message.to_string()
        } else {
            format!("{message}: {}", details.join("; "))
        };
        let code = e.status_code.as_u16();
        let rate_limited =
            code == 429 || (code == 403 && message.to_ascii_lowercase().contains("rate limit"));
        let detail = if rate_limited {
            format!(
                "GitHub's rate limit still held after waiting and retrying ({code} {said}); try again later"
            )
        } else {
            match e.status_code {
                StatusCode::UNAUTHORIZED => format!(
                    "GitHub rejected the credentials (401 {said}); set GITHUB_TOKEN or GH_TOKEN to a \
                     valid token, or check the GitHub App id and private key"
                ),
                StatusCode::FORBIDDEN => format!(
                    "GitHub refused (403 {said}); the token needs contents: write and \
                     pull-requests: write on {repo} (in a workflow, its `permissions:`)"
                ),
                StatusCode::NOT_FOUND => format!(
                    "not found (404 {said}); {repo} does not exist, or the token cannot see it"
                ),
                StatusCode::UNPROCESSABLE_ENTITY => {
                    format!("GitHub could not process the request (422 {said})")
                }
                _ => format!("GitHub answered {code}: {said}"),
            }
        };
        ApiError {
            what: what.to_string(),
            status: Some(code),
            kind: None,
            detail,
        }
    }
}

/// A pull request, as far as gantry reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub node_id: String,
    pub html_url: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub head: PrHead,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PrHead {
    #[serde(rename = "ref")]
    pub branch: String,
    #[serde(default)]
    pub repo: Option<PrRepo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PrRepo {
    pub full_name: String,
}

/// A new pull request.
pub struct NewPr<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    pub draft: bool,
}

/// A commit `createCommitOnBranch` made.
#[derive(Debug, Clone)]
pub struct ApiCommit {
    pub oid: String,
    pub url: String,
}

/// Logs each rate-limit wait octocrab's retry makes.
struct LogWaits;

impl RateLimitMetrics for LogWaits {
    fn retry_after_error(&self, _: &http::Request<octocrab::OctoBody>, _: StatusCode, _: usize) {}

    fn rate_limited(
        &self,
        req: &http::Request<octocrab::OctoBody>,
        status: StatusCode,
        retries_left: usize,
        wait_seconds: u64,
    ) {
        tracing::warn!(
            path = req.uri().path(),
            status = status.as_u16(),
            wait_seconds,
            retries_left,
            "GitHub rate limit: waiting before retrying"
        );
    }
}

pub struct GitHub {
    rest: Octocrab,
    graphql: Octocrab,
    pub repo: Repo,
    token: SecretString,
}

/// The GraphQL endpoint for a REST root: `…/api/v3` → `…/api/graphql` on
/// GitHub Enterprise Server, `ROOT/graphql` elsewhere.
pub fn graphql_url(api_url: &str) -> String {
    let root = api_url.trim_end_matches('/');
    match root.strip_suffix("/api/v3") {
        Some(host) => format!("{host}/api/graphql"),
        None => format!("{root}/graphql"),
    }
}

type Builder = octocrab::OctocrabBuilder<
    octocrab::NoSvc,
    octocrab::DefaultOctocrabBuilderConfig,
    octocrab::NoAuth,
    octocrab::NotLayerReady,
>;

fn build(b: Result<Builder, ApiError>) -> Result<Octocrab, ApiError> {
    b?.build()
        .map_err(|e| ApiError::config("GitHub client", e.to_string()))
}

fn builder(base: &str) -> Result<Builder, ApiError> {
    let timeout = Some(std::time::Duration::from_secs(30));
    Octocrab::builder()
        .base_uri(base)
        .map_err(|e| ApiError::config("GitHub API URL", format!("{base:?} is not a URL: {e}")))
        .map(|b| {
            b.add_header(
                http::header::USER_AGENT,
                concat!("gantry/", env!("CARGO_PKG_VERSION")).to_string(),
            )
            .add_header(
                http::header::ACCEPT,
                "application/vnd.github+json".to_string(),
            )
            .add_header(
                http::HeaderName::from_static("x-github-api-version"),
                "2022-11-28".to_string(),
            )
            .add_retry_config(RetryConfig::HandleRateLimits {
                metrics: Arc::new(LogWaits),
                max_retries: 5,
                min_wait_seconds: 60,
                retry_on_forbidden: false,
            })
            .set_connect_timeout(timeout)
            .set_read_timeout(timeout)
        })
}

impl GitHub {
    /// Connects; with a GitHub App, finds the repository's installation and
    /// exchanges the App's JWT for an installation token first.
    pub async fn connect(settings: Settings) -> Result<GitHub, ApiError> {
        let Settings {
            api_url,
            repo,
            auth,
        } = settings;
        let token = match auth {
            Auth::Token(token) => token,
            Auth::App { id, private_key } => {
                let key =
                    octocrab::EncodingKey::from_rsa_pem(private_key.expose_secret().as_bytes())
                        .map_err(|e| {
                            ApiError::config(
                                "GitHub App private key",
                                format!("not an RSA private key in PEM form ({e})"),
                            )
                        })?;
                let app =
                    build(builder(&api_url).map(|b| b.app(octocrab::models::AppId(id), key)))?;
                let what = format!("find the GitHub App {id}'s installation on {repo}");
                let installation: Value = app
                    .get(
                        format!("/repos/{}/{}/installation", repo.owner, repo.name),
                        None::<&()>,
                    )
                    .await
                    .map_err(|e| map_err(&what, &repo, e))?;
                let installation_id = installation["id"]
                    .as_u64()
                    .ok_or_else(|| ApiError::config(&what, "the answer has no installation id"))?;
                let (_, token) = app
                    .installation_and_token(octocrab::models::InstallationId(installation_id))
                    .await
                    .map_err(|e| {
                        map_err(
                            &format!(
                                "get an installation token for installation {installation_id}"
                            ),
                            &repo,
                            e,
                        )
                    })?;
                token
            }
        };
        let graphql = graphql_url(&api_url);
        let graphql_root = graphql.strip_suffix("/graphql").ok_or_else(|| {
            ApiError::config(
                "GitHub GraphQL URL",
                format!("{graphql:?} does not end in /graphql"),
            )
        })?;
        Ok(GitHub {
            rest: build(builder(&api_url).map(|b| b.personal_token(token.clone())))?,
            graphql: build(builder(graphql_root).map(|b| b.personal_token(token.clone())))?,
            repo,
            token,
        })
    }

    /// The token in use, for git's HTTPS credentials.
    pub fn token(&self) -> &SecretString {
        &self.token
    }

    fn path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.repo.owner, self.repo.name)
    }

    fn fail(&self, what: &str) -> impl FnOnce(octocrab::Error) -> ApiError + '_ {
        let what = what.to_string();
        move |e| map_err(&what, &self.repo, e)
    }

    /// POSTs `body` to a path of the repository; `what` names the request
    /// in errors.
    async fn post<R: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        body: &Value,
    ) -> Result<R, ApiError> {
        self.rest
            .post(self.path(path), Some(body))
            .await
            .map_err(self.fail(what))
    }
}

fn map_err(what: &str, repo: &Repo, e: octocrab::Error) -> ApiError {
    match e {
        octocrab::Error::GitHub { source, .. } => ApiError::status(what, repo, &source),
        octocrab::Error::Json { source, .. } => ApiError::config(
            what,
            format!("GitHub's answer is not what its API documents: {source}"),
        ),
        other => ApiError::config(
            what,
            format!(
                "cannot reach GitHub: {}",
                rollout_core::error_chain::error_chain(&other)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_from_remote_urls() {
        let acme = Some(Repo {
            owner: "acme".into(),
            name: "gitops".into(),
        });
        for url in [
            "https://github.com/acme/gitops.git",
            "https://github.com/acme/gitops",
            "https://x-access-token@ghe.example.com/acme/gitops/",
            "git@github.com:acme/gitops.git",
            "ssh://git@github.com/acme/gitops.git",
        ] {
            assert_eq!(Repo::from_remote_url(url), acme, "{url}");
        }
        for url in [
            "file:///srv/git/gitops.git",
            "/srv/git/gitops.git",
            "https://github.com/acme",
        ] {
            assert_eq!(Repo::from_remote_url(url), None, "{url}");
        }
        assert_eq!(Repo::parse("acme/gitops"), acme);
        assert_eq!(Repo::parse("acme/"), None);
        assert_eq!(Repo::parse("a b/c"), None);
    }

    #[test]
    fn graphql_endpoint_for_github_and_enterprise() {
        assert_eq!(
            graphql_url("https://api.github.com"),
            "https://api.github.com/graphql"
        );
        assert_eq!(
            graphql_url("https://ghe.example.com/api/v3/"),
            "https://ghe.example.com/api/graphql"
        );
    }
}
