//! A stateful stand-in for GitHub's REST and GraphQL APIs, for the
//! endpoints gantry uses, answering with the shapes and errors GitHub
//! documents. No GitHub-compatible server is installable here (see
//! STANDINS.md), so this one keeps pull requests in memory and branches,
//! files and commits in a real bare repository — the same one the tests'
//! git pushes go to. Every request is recorded for the tests to assert.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

pub const OWNER: &str = "acme";
pub const NAME: &str = "gitops";
pub const TOKEN: &str = "ghs_test_token_never_printed";

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Without a GitHub Enterprise `/api/v3` prefix.
    pub path: String,
    pub prefixed: bool,
    pub query: String,
    pub authorization: String,
    pub api_version: String,
    pub body: Value,
}

impl Request {
    /// The GraphQL operation name, for POST /graphql.
    pub fn operation(&self) -> Option<&str> {
        let q = self.body["query"].as_str()?;
        let rest = q.trim_start().split_once(' ')?.1;
        rest.split(['(', ' ', '{']).next()
    }
}

#[derive(Debug, Clone)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub draft: bool,
    pub open: bool,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub team_reviewers: Vec<String>,
    pub auto_merge: Option<String>,
    pub comments: Vec<String>,
}

impl PullRequest {
    /// A newly opened pull request.
    fn opened(number: u64, head: &str, base: &str, title: &str, body: &str, draft: bool) -> Self {
        PullRequest {
            number,
            title: title.into(),
            body: body.into(),
            head: head.into(),
            base: base.into(),
            draft,
            open: true,
            labels: vec![],
            reviewers: vec![],
            team_reviewers: vec![],
            auto_merge: None,
            comments: vec![],
        }
    }

    fn node_id(&self) -> String {
        format!("PR_node{}", self.number)
    }

    fn json(&self, bare: &Path) -> Value {
        let sha = git2::Repository::open(bare)
            .ok()
            .and_then(|r| r.refname_to_id(&format!("refs/heads/{}", self.head)).ok())
            .map(|o| o.to_string());
        json!({
            "number": self.number,
            "node_id": self.node_id(),
            "html_url": format!("https://github.example/{OWNER}/{NAME}/pull/{}", self.number),
            "state": if self.open { "open" } else { "closed" },
            "draft": self.draft,
            "title": self.title,
            "body": self.body,
            "user": { "login": "gantry-test[bot]" },
            "head": { "ref": self.head, "label": format!("{OWNER}:{}", self.head), "sha": sha,
                      "repo": { "full_name": format!("{OWNER}/{NAME}") } },
            "base": { "ref": self.base, "repo": { "full_name": format!("{OWNER}/{NAME}") } },
            "labels": self.labels.iter().map(|l| json!({ "name": l })).collect::<Vec<_>>(),
            "requested_reviewers": self.reviewers.iter().map(|l| json!({ "login": l })).collect::<Vec<_>>(),
            "requested_teams": self.team_reviewers.iter().map(|t| json!({ "slug": t })).collect::<Vec<_>>(),
        })
    }
}

/// A canned answer for the next requests matching `method` and a path ending.
pub struct Fault {
    pub method: &'static str,
    pub path_ends_with: String,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
    pub times: usize,
}

/// A GitHub App the fake knows: JWTs must verify with `public_pem`.
pub struct App {
    pub id: u64,
    pub public_pem: String,
    pub installation: u64,
    pub token: String,
}

type Hook = Box<dyn FnOnce(&Path) + Send>;

pub struct State {
    pub bare: PathBuf,
    pub pulls: Vec<PullRequest>,
    pub requests: Vec<Request>,
    pub faults: VecDeque<Fault>,
    pub app: Option<App>,
    /// Runs inside the next createCommitOnBranch, before the head check
    /// (another pipeline's commit landing at that moment).
    pub before_commit: Option<Hook>,
}

pub struct FakeGitHub {
    pub port: u16,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeGitHub {
    /// Serves `OWNER/NAME`, whose git data is the bare repository `bare`.
    pub fn start(bare: &Path) -> FakeGitHub {
        let state = Arc::new(Mutex::new(State {
            bare: bare.to_path_buf(),
            pulls: Vec::new(),
            requests: Vec::new(),
            faults: VecDeque::new(),
            app: None,
            before_commit: None,
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let (port, runtime) = crate::serve(app, "fake GitHub");
        FakeGitHub {
            port,
            state,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    pub fn pulls(&self) -> Vec<PullRequest> {
        self.state().pulls.clone()
    }

    /// Adds an open pull request as if someone (or an older run) opened it.
    pub fn add_pull(&self, head: &str, base: &str, title: &str, body: &str) -> u64 {
        let mut s = self.state();
        let number = s.pulls.len() as u64 + 1;
        s.pulls
            .push(PullRequest::opened(number, head, base, title, body, false));
        number
    }
}

fn answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found() -> Response {
    answer(
        404,
        json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest" }),
    )
}

fn invalid(message: &str) -> Response {
    answer(
        422,
        json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
    )
}

fn validation_failed(message: &str) -> Response {
    answer(
        422,
        json!({
            "message": "Validation Failed",
            "errors": [{ "resource": "PullRequest", "code": "custom", "message": message }],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        }),
    )
}

async fn handle(
    AxumState(state): AxumState<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let raw = uri.path().to_string();
    let (path, prefixed) = match raw.strip_prefix("/api/v3") {
        Some(p) => (p.to_string(), true),
        None if raw == "/api/graphql" => ("/graphql".to_string(), true),
        None => (raw.clone(), false),
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.requests.push(Request {
        method: method.to_string(),
        path: path.clone(),
        prefixed,
        query: uri.query().unwrap_or_default().to_string(),
        authorization: header("authorization"),
        api_version: header("x-github-api-version"),
        body: body.clone(),
    });
    if let Some(response) = canned_fault(&mut s, &method, &path) {
        return response;
    }

    let auth = header("authorization");
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();

    if let Some(response) = app_endpoint(&s, &segments, &auth) {
        return response;
    }
    let token_ok = auth == format!("Bearer {TOKEN}")
        || s.app
            .as_ref()
            .is_some_and(|a| auth == format!("Bearer {}", a.token));
    if !token_ok {
        return bad_credentials();
    }
    if path == "/graphql" && method == Method::POST {
        return graphql(&mut s, &body);
    }
    let Some(rest) = path.strip_prefix(&format!("/repos/{OWNER}/{NAME}")) else {
        return not_found();
    };
    let bare = s.bare.clone();
    let repo = git2::Repository::open(&bare).unwrap();
    let rest_segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let method = method.as_str();
    match rest_segments.as_slice() {
        ["pulls", ..] | ["issues", ..] => {
            pulls(&mut s, method, &rest_segments, &body, &param, &repo)
        }
        _ => git_data(&repo, method, &rest_segments, &body, &param),
    }
}

/// A canned fault for this request, if one is armed (each answers
/// `times` requests, then is gone).
fn canned_fault(s: &mut State, method: &Method, path: &str) -> Option<Response> {
    let i = s
        .faults
        .iter()
        .position(|f| f.method == method.as_str() && path.ends_with(&f.path_ends_with))?;
    let fault = &mut s.faults[i];
    fault.times -= 1;
    let mut response = answer(fault.status, fault.body.clone());
    for (name, value) in &fault.headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    if fault.times == 0 {
        s.faults.remove(i);
    }
    Some(response)
}

/// The App's own endpoints, which take its JWT (None: not one of them).
fn app_endpoint(s: &State, segments: &[&str], auth: &str) -> Option<Response> {
    if let ["app", "installations", id, "access_tokens"] = segments {
        return Some(match (&s.app, verify_jwt(s, auth)) {
            (Some(app), true) if id.parse() == Ok(app.installation) => answer(
                201,
                json!({
                    "token": app.token,
                    "expires_at": "2099-01-01T00:00:00Z",
                    "permissions": { "contents": "write", "pull_requests": "write" },
                    "repository_selection": "selected",
                }),
            ),
            (Some(_), true) => not_found(),
            _ => bad_credentials(),
        });
    }
    if segments == ["repos", OWNER, NAME, "installation"] {
        return Some(match (&s.app, verify_jwt(s, auth)) {
            (Some(app), true) => answer(
                200,
                json!({ "id": app.installation, "app_id": app.id, "account": { "login": OWNER } }),
            ),
            _ => bad_credentials(),
        });
    }
    None
}

/// Pull requests, their reviewers, labels and comments.
fn pulls(
    s: &mut State,
    method: &str,
    rest: &[&str],
    body: &Value,
    param: &dyn Fn(&str) -> Option<String>,
    repo: &git2::Repository,
) -> Response {
    let bare = s.bare.clone();
    match (method, rest) {
        ("GET", ["pulls"]) => {
            let head = param("head");
            let base = param("base");
            let open_only = param("state").as_deref() != Some("all");
            let page: usize = param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let list: Vec<Value> = s
                .pulls
                .iter()
                .filter(|p| !open_only || p.open)
                .filter(|p| {
                    head.as_ref()
                        .is_none_or(|h| *h == format!("{OWNER}:{}", p.head))
                })
                .filter(|p| base.as_ref().is_none_or(|b| *b == p.base))
                .skip((page - 1) * 100)
                .take(100)
                .map(|p| p.json(&bare))
                .collect();
            answer(200, Value::Array(list))
        }
        ("POST", ["pulls"]) => {
            let head = body["head"].as_str().unwrap_or_default().to_string();
            let base = body["base"].as_str().unwrap_or_default().to_string();
            if repo.refname_to_id(&format!("refs/heads/{head}")).is_err() {
                return answer(
                    422,
                    json!({ "message": "Validation Failed",
                            "errors": [{ "resource": "PullRequest", "field": "head", "code": "invalid" }] }),
                );
            }
            if s.pulls
                .iter()
                .any(|p| p.open && p.head == head && p.base == base)
            {
                return validation_failed(&format!(
                    "A pull request already exists for {OWNER}:{head}."
                ));
            }
            let number = s.pulls.len() as u64 + 1;
            let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
            let draft = body["draft"].as_bool().unwrap_or(false);
            let pr =
                PullRequest::opened(number, &head, &base, &text("title"), &text("body"), draft);
            let json = pr.json(&bare);
            s.pulls.push(pr);
            answer(201, json)
        }
        ("PATCH", ["pulls", n]) => with_pull(s, n, |pr| {
            if let Some(t) = body["title"].as_str() {
                pr.title = t.into();
            }
            if let Some(b) = body["body"].as_str() {
                pr.body = b.into();
            }
            match body["state"].as_str() {
                Some("closed") => pr.open = false,
                Some("open") => pr.open = true,
                _ => {}
            }
            200
        }),
        ("POST", ["pulls", n, "requested_reviewers"]) => with_pull(s, n, |pr| {
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            };
            for user in strings(&body["reviewers"]) {
                if !pr.reviewers.contains(&user) {
                    pr.reviewers.push(user);
                }
            }
            for team in strings(&body["team_reviewers"]) {
                if !pr.team_reviewers.contains(&team) {
                    pr.team_reviewers.push(team);
                }
            }
            201
        }),
        ("POST", ["issues", n, "labels"]) => {
            let labels: Vec<String> = body["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
            let Some(pr) = s.pulls.iter_mut().find(|p| n.parse() == Ok(p.number)) else {
                return not_found();
            };
            for label in labels {
                if !pr.labels.contains(&label) {
                    pr.labels.push(label);
                }
            }
            answer(
                200,
                Value::Array(pr.labels.iter().map(|l| json!({ "name": l })).collect()),
            )
        }
        ("POST", ["issues", n, "comments"]) => {
            let Some(pr) = s.pulls.iter_mut().find(|p| n.parse() == Ok(p.number)) else {
                return not_found();
            };
            pr.comments
                .push(body["body"].as_str().unwrap_or_default().to_string());
            answer(
                201,
                json!({ "id": pr.comments.len(), "body": body["body"] }),
            )
        }
        _ => not_found(),
    }
}

/// Git references and file contents, on the bare repository itself.
fn git_data(
    repo: &git2::Repository,
    method: &str,
    rest: &[&str],
    body: &Value,
    param: &dyn Fn(&str) -> Option<String>,
) -> Response {
    match (method, rest) {
        ("POST", ["git", "refs"]) => {
            let name = body["ref"].as_str().unwrap_or_default();
            let Ok(sha) = git2::Oid::from_str(body["sha"].as_str().unwrap_or_default()) else {
                return invalid("Object does not exist");
            };
            if repo.find_reference(name).is_ok() {
                return invalid("Reference already exists");
            }
            repo.reference(name, sha, false, "fake: create").unwrap();
            answer(
                201,
                json!({ "ref": name, "object": { "sha": sha.to_string(), "type": "commit" } }),
            )
        }
        ("PATCH", ["git", "refs", "heads", branch @ ..]) => {
            let name = format!("refs/heads/{}", branch.join("/"));
            let Ok(sha) = git2::Oid::from_str(body["sha"].as_str().unwrap_or_default()) else {
                return invalid("Object does not exist");
            };
            let Ok(current) = repo.refname_to_id(&name) else {
                return invalid("Reference does not exist");
            };
            let force = body["force"].as_bool().unwrap_or(false);
            if !force && !repo.graph_descendant_of(sha, current).unwrap_or(false) && sha != current
            {
                return invalid("Update is not a fast forward");
            }
            repo.reference(&name, sha, true, "fake: update").unwrap();
            answer(
                200,
                json!({ "ref": name, "object": { "sha": sha.to_string(), "type": "commit" } }),
            )
        }
        ("DELETE", ["git", "refs", "heads", branch @ ..]) => {
            let name = format!("refs/heads/{}", branch.join("/"));
            match repo.find_reference(&name) {
                Ok(mut r) => {
                    r.delete().unwrap();
                    (StatusCode::NO_CONTENT, "").into_response()
                }
                Err(_) => invalid("Reference does not exist"),
            }
        }
        ("GET", ["contents", file @ ..]) => {
            let file = file.join("/");
            let at = param("ref").unwrap_or_else(|| "main".into());
            let blob = repo
                .revparse_single(&format!("{at}:{file}"))
                .and_then(|o| o.peel_to_blob());
            match blob {
                Ok(blob) => {
                    // GitHub wraps the base64 at 60 characters.
                    let encoded = base64::engine::general_purpose::STANDARD.encode(blob.content());
                    let wrapped: Vec<String> = encoded
                        .as_bytes()
                        .chunks(60)
                        .map(|c| String::from_utf8(c.to_vec()).unwrap())
                        .collect();
                    answer(
                        200,
                        json!({
                            "type": "file", "encoding": "base64", "path": file,
                            "name": file.rsplit('/').next(), "sha": blob.id().to_string(),
                            "size": blob.size(), "content": wrapped.join("\n") + "\n",
                        }),
                    )
                }
                Err(_) => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn bad_credentials() -> Response {
    answer(
        401,
        json!({ "message": "Bad credentials", "documentation_url": "https://docs.github.com/rest" }),
    )
}

fn with_pull(
    s: &mut State,
    number: &str,
    change: impl FnOnce(&mut PullRequest) -> u16,
) -> Response {
    let bare = s.bare.clone();
    let Some(pr) = s.pulls.iter_mut().find(|p| number.parse() == Ok(p.number)) else {
        return not_found();
    };
    let status = change(pr);
    answer(status, pr.json(&bare))
}

/// An App JWT: RS256, signed by the App's key, issued by its id.
fn verify_jwt(s: &State, authorization: &str) -> bool {
    let (Some(app), Some(jwt)) = (&s.app, authorization.strip_prefix("Bearer ")) else {
        return false;
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_pem.as_bytes()) else {
        return false;
    };
    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    match jsonwebtoken::decode::<Value>(jwt, &key, &validation) {
        Ok(data) => {
            let iss = &data.claims["iss"];
            iss.as_u64() == Some(app.id) || iss.as_str() == Some(&app.id.to_string())
        }
        Err(_) => false,
    }
}

fn graphql_error(kind: &str, message: &str, path: &str) -> Response {
    answer(
        200,
        json!({
            "data": { path: null },
            "errors": [{ "type": kind, "path": [path], "message": message,
                         "locations": [{ "line": 2, "column": 3 }] }],
        }),
    )
}

fn graphql(s: &mut State, body: &Value) -> Response {
    let query = body["query"].as_str().unwrap_or_default();
    let vars = &body["variables"];
    let repo = git2::Repository::open(&s.bare).unwrap();
    if query.starts_with("query GantryBranchHead") {
        if vars["owner"] != OWNER || vars["name"] != NAME {
            return graphql_error(
                "NOT_FOUND",
                &format!(
                    "Could not resolve to a Repository with the name '{}/{}'.",
                    vars["owner"], vars["name"]
                ),
                "repository",
            );
        }
        let oid = repo
            .refname_to_id(vars["ref"].as_str().unwrap_or_default())
            .ok();
        let reference = oid.map(|o| json!({ "target": { "oid": o.to_string() } }));
        return answer(
            200,
            json!({ "data": { "repository": { "ref": reference } } }),
        );
    }
    if query.starts_with("mutation GantryCommit") {
        let input = &vars["input"];
        if input["branch"]["repositoryNameWithOwner"] != format!("{OWNER}/{NAME}") {
            return graphql_error(
                "NOT_FOUND",
                "Could not resolve to a Repository",
                "createCommitOnBranch",
            );
        }
        let branch = input["branch"]["branchName"].as_str().unwrap_or_default();
        let refname = format!("refs/heads/{branch}");
        if let Some(hook) = s.before_commit.take() {
            hook(&s.bare);
        }
        let Ok(head) = repo.refname_to_id(&refname) else {
            return graphql_error(
                "NOT_FOUND",
                &format!("A ref named \"{refname}\" does not exist."),
                "createCommitOnBranch",
            );
        };
        let expected = input["expectedHeadOid"].as_str().unwrap_or_default();
        if expected != head.to_string() {
            return graphql_error(
                "STALE_DATA",
                &format!(
                    "Expected branch to point to \"{expected}\" but it did not. Pull and try again."
                ),
                "createCommitOnBranch",
            );
        }
        let parent = repo.find_commit(head).unwrap();
        let mut update = git2::build::TreeUpdateBuilder::new();
        for addition in input["fileChanges"]["additions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let contents = base64::engine::general_purpose::STANDARD
                .decode(addition["contents"].as_str().unwrap_or_default())
                .unwrap();
            let blob = repo.blob(&contents).unwrap();
            update.upsert(
                addition["path"].as_str().unwrap_or_default(),
                blob,
                git2::FileMode::Blob,
            );
        }
        let tree = update
            .create_updated(&repo, &parent.tree().unwrap())
            .unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let headline = input["message"]["headline"].as_str().unwrap_or_default();
        let body = input["message"]["body"].as_str().unwrap_or_default();
        let message = if body.is_empty() {
            headline.to_string()
        } else {
            format!("{headline}\n\n{body}")
        };
        let github = git2::Signature::now("GitHub", "noreply@github.com").unwrap();
        let oid = repo
            .commit(
                Some(&refname),
                &github,
                &github,
                &message,
                &tree,
                &[&parent],
            )
            .unwrap();
        return answer(
            200,
            json!({ "data": { "createCommitOnBranch": { "commit": {
                "oid": oid.to_string(),
                "url": format!("https://github.example/{OWNER}/{NAME}/commit/{oid}"),
            } } } }),
        );
    }
    if query.starts_with("mutation GantryAutoMerge") {
        let node = vars["pr"].as_str().unwrap_or_default();
        let method = vars["method"].as_str().unwrap_or_default();
        if !["MERGE", "SQUASH", "REBASE"].contains(&method) {
            return graphql_error(
                "INVALID",
                "invalid merge method",
                "enablePullRequestAutoMerge",
            );
        }
        return match s.pulls.iter_mut().find(|p| p.node_id() == node) {
            Some(pr) => {
                pr.auto_merge = Some(method.to_string());
                answer(
                    200,
                    json!({ "data": { "enablePullRequestAutoMerge": { "clientMutationId": null } } }),
                )
            }
            None => graphql_error(
                "NOT_FOUND",
                &format!("Could not resolve to a node with the global id of '{node}'"),
                "enablePullRequestAutoMerge",
            ),
        };
    }
    answer(400, json!({ "message": "Problems parsing JSON" }))
}
