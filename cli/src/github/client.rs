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

use std::sync::Arc;

use http::StatusCode;
use octocrab::Octocrab;
use octocrab::secrecy::{ExposeSecret as _, SecretString};
use octocrab::service::middleware::retry::{RateLimitMetrics, RetryConfig};
use serde::Deserialize;
use serde_json::{Value, json};

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

    /// Open pull requests into `base`, optionally only those from `head` (a
    /// branch of this repository).
    pub async fn open_pulls(
        &self,
        base: &str,
        head: Option<&str>,
    ) -> Result<Vec<PullRequest>, ApiError> {
        let mut query = vec![
            ("state", "open".to_string()),
            ("base", base.to_string()),
            ("per_page", "100".to_string()),
        ];
        if let Some(head) = head {
            query.push(("head", format!("{}:{head}", self.repo.owner)));
        }
        let what = format!("list the open pull requests into {base} of {}", self.repo);
        let mut all = Vec::new();
        for page in 1.. {
            let mut q = query.clone();
            q.push(("page", page.to_string()));
            let batch: Vec<PullRequest> = self
                .rest
                .get(self.path("/pulls"), Some(&q))
                .await
                .map_err(self.fail(&what))?;
            let full = batch.len() == 100;
            all.extend(batch);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    pub async fn create_pull(&self, pr: &NewPr<'_>) -> Result<PullRequest, ApiError> {
        let body = json!({
            "title": pr.title, "body": pr.body, "head": pr.head, "base": pr.base,
            "draft": pr.draft, "maintainer_can_modify": true,
        });
        let what = format!("open a pull request from {} into {}", pr.head, pr.base);
        self.post(&what, "/pulls", &body).await
    }

    /// Sets fields of a pull request (title, body, state).
    pub async fn update_pull(&self, number: u64, fields: &Value) -> Result<PullRequest, ApiError> {
        self.rest
            .patch(self.path(&format!("/pulls/{number}")), Some(fields))
            .await
            .map_err(self.fail(&format!("update pull request #{number}")))
    }

    pub async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ApiError> {
        let _: Value = self
            .post(
                &format!("label pull request #{number}"),
                &format!("/issues/{number}/labels"),
                &json!({ "labels": labels }),
            )
            .await?;
        Ok(())
    }

    /// Requests reviews: `user` or `org/team` (a team of the owner's organisation).
    pub async fn request_reviewers(&self, number: u64, who: &[String]) -> Result<(), ApiError> {
        let (teams, users): (Vec<&String>, Vec<&String>) =
            who.iter().partition(|r| r.contains('/'));
        let teams: Vec<&str> = teams
            .iter()
            .map(|t| t.split_once('/').map_or(t.as_str(), |(_, slug)| slug))
            .collect();
        let _: Value = self
            .post(
                &format!("request reviews on pull request #{number}"),
                &format!("/pulls/{number}/requested_reviewers"),
                &json!({ "reviewers": users, "team_reviewers": teams }),
            )
            .await?;
        Ok(())
    }

    pub async fn comment(&self, number: u64, body: &str) -> Result<(), ApiError> {
        let _: Value = self
            .post(
                &format!("comment on pull request #{number}"),
                &format!("/issues/{number}/comments"),
                &json!({ "body": body }),
            )
            .await?;
        Ok(())
    }

    pub async fn delete_branch(&self, branch: &str) -> Result<(), ApiError> {
        let what = format!("delete branch {branch}");
        let response = self
            .rest
            ._delete(self.path(&format!("/git/refs/heads/{branch}")), None::<&()>)
            .await
            .map_err(self.fail(&what))?;
        octocrab::map_github_error(response)
            .await
            .map(|_| ())
            .map_err(self.fail(&what))
    }

    /// Points `branch` at `sha`, creating it or moving it (force).
    pub async fn reset_branch(&self, branch: &str, sha: &str) -> Result<(), ApiError> {
        let what = format!("point branch {branch} at {sha}");
        let moved: Result<Value, _> = self
            .rest
            .patch(
                self.path(&format!("/git/refs/heads/{branch}")),
                Some(&json!({ "sha": sha, "force": true })),
            )
            .await;
        match moved.map_err(self.fail(&what)) {
            Ok(_) => Ok(()),
            // GitHub answers 422 "Reference does not exist" for a missing branch.
            Err(e) if matches!(e.status, Some(404 | 422)) => {
                let created = json!({ "ref": format!("refs/heads/{branch}"), "sha": sha });
                let _: Value = self.post(&what, "/git/refs", &created).await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A file's text at a commit.
    pub async fn file_text(&self, path: &str, commit: &str) -> Result<String, ApiError> {
        let what = format!("read {path} at {}", &commit[..commit.len().min(12)]);
        let content: Value = self
            .rest
            .get(
                self.path(&format!("/contents/{path}")),
                Some(&[("ref", commit)]),
            )
            .await
            .map_err(|e| match map_err(&what, &self.repo, e) {
                e if e.status == Some(404) => {
                    ApiError::config(&what, "no such file at that commit")
                }
                e => e,
            })?;
        let encoded = match (content["type"].as_str(), content["encoding"].as_str()) {
            (Some("file"), Some("base64")) => content["content"].as_str().unwrap_or_default(),
            _ => {
                return Err(ApiError::config(
                    &what,
                    "GitHub did not answer with a file's content",
                ));
            }
        };
        use base64::Engine as _;
        let compact: String = encoded.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| ApiError::config(&what, format!("invalid base64 content: {e}")))?;
        String::from_utf8(bytes).map_err(|_| ApiError::config(&what, "the file is not valid UTF-8"))
    }

    async fn graphql(&self, what: &str, query: &str, variables: Value) -> Result<Value, ApiError> {
        let answer: Value = self
            .graphql
            .post(
                "/graphql",
                Some(&json!({ "query": query, "variables": variables })),
            )
            .await
            .map_err(self.fail(what))?;
        if let Some(first) = answer["errors"].as_array().and_then(|e| e.first()) {
            let messages: Vec<&str> = answer["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["message"].as_str())
                .collect();
            return Err(ApiError {
                what: what.to_string(),
                status: None,
                kind: first["type"].as_str().map(String::from),
                detail: messages.join("; "),
            });
        }
        Ok(answer["data"].clone())
    }

    /// The commit a branch points at, or None when there is no such branch.
    /// Read through GraphQL: REST's ref endpoint may be cached for a minute,
    /// which would turn every retry after a lost race into another loss.
    pub async fn branch_head(&self, branch: &str) -> Result<Option<String>, ApiError> {
        const QUERY: &str =
            "query GantryBranchHead($owner: String!, $name: String!, $ref: String!) {
  repository(owner: $owner, name: $name) { ref(qualifiedName: $ref) { target { oid } } }
}";
        let data = self
            .graphql(
                &format!("read branch {branch} of {}", self.repo),
                QUERY,
                json!({
                    "owner": self.repo.owner, "name": self.repo.name,
                    "ref": format!("refs/heads/{branch}"),
                }),
            )
            .await?;
        Ok(data["repository"]["ref"]["target"]["oid"]
            .as_str()
            .map(String::from))
    }

    /// Commits file contents onto `branch` if it still points at
    /// `expected_head` (else the error [`ApiError::is_stale_head`]).
    /// GitHub signs the commit.
    pub async fn create_commit_on_branch(
        &self,
        branch: &str,
        expected_head: &str,
        message: &str,
        files: &[(String, String)],
    ) -> Result<ApiCommit, ApiError> {
        const MUTATION: &str = "mutation GantryCommit($input: CreateCommitOnBranchInput!) {
  createCommitOnBranch(input: $input) { commit { oid url } }
}";
        use base64::Engine as _;
        let (headline, body) = message.split_once('\n').unwrap_or((message, ""));
        let additions: Vec<Value> = files
            .iter()
            .map(|(path, text)| {
                json!({
                    "path": path,
                    "contents": base64::engine::general_purpose::STANDARD.encode(text),
                })
            })
            .collect();
        let input = json!({
            "branch": {
                "repositoryNameWithOwner": self.repo.to_string(),
                "branchName": branch,
            },
            "message": { "headline": headline.trim(), "body": body.trim() },
            "fileChanges": { "additions": additions },
            "expectedHeadOid": expected_head,
        });
        let data = self
            .graphql(
                &format!("commit to {branch} of {} through the API", self.repo),
                MUTATION,
                json!({ "input": input }),
            )
            .await?;
        let commit = &data["createCommitOnBranch"]["commit"];
        match (commit["oid"].as_str(), commit["url"].as_str()) {
            (Some(oid), Some(url)) => Ok(ApiCommit {
                oid: oid.to_string(),
                url: url.to_string(),
            }),
            _ => Err(ApiError::config(
                "createCommitOnBranch",
                "GitHub's answer has no commit",
            )),
        }
    }

    /// Turns on auto-merge with `method` (MERGE, SQUASH or REBASE).
    pub async fn enable_auto_merge(&self, pr: &PullRequest, method: &str) -> Result<(), ApiError> {
        const MUTATION: &str = "mutation GantryAutoMerge($pr: ID!, $method: PullRequestMergeMethod!) {
  enablePullRequestAutoMerge(input: { pullRequestId: $pr, mergeMethod: $method }) { clientMutationId }
}";
        self.graphql(
            &format!("enable auto-merge on pull request #{}", pr.number),
            MUTATION,
            json!({ "pr": pr.node_id, "method": method }),
        )
        .await
        .map(|_| ())
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
