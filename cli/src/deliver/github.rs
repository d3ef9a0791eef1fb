//! The two deliveries that go through GitHub: a commit made by GitHub's API
//! (`--commit-via api`), and a pull request (`--pr`).

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use octocrab::secrecy::SecretString;
use serde_json::json;

use super::{Delivered, after_attempts};
use crate::git::{Checkout, CommitSettings};
use crate::github::api_commit::{self, Branches};
use crate::github::client::{Auth, GitHub, NewPr, PullRequest, Repo, Settings};
use crate::github::pull_request;
use crate::kustomize::bump::FileEdit;
use crate::kustomize::image_ref::ImageSpec;

/// How to reach GitHub.
pub struct GitHubOptions {
    /// REST root (`GITHUB_API_URL` in Actions); api.github.com by default.
    pub api_url: Option<String>,
    /// `OWNER/REPO`; else read from the remote's URL, else `GITHUB_REPOSITORY`.
    pub repo: Option<String>,
    pub app_id: Option<u64>,
    /// The App's private key file; else `GANTRY_GITHUB_APP_PRIVATE_KEY`.
    pub app_key: Option<PathBuf>,
}

pub struct ApiOptions {
    pub github: GitHubOptions,
    pub remote: String,
    /// The branch to commit on (default: the current branch).
    pub branch: Option<String>,
    pub max_attempts: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

pub struct PrOptions {
    pub github: GitHubOptions,
    pub remote: String,
    /// The pull request's base (default: the current branch).
    pub base: Option<String>,
    /// The head branch's template (see `pull_request::branch_name`).
    pub branch_template: String,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub draft: bool,
    pub auto_merge: Option<MergeMethod>,
    /// Make the commit with `createCommitOnBranch` instead of a git push.
    pub via_api: bool,
    pub max_attempts: usize,
}

/// The repository, the branch the bump is for, and a connected client.
struct Session {
    checkout: Checkout,
    branch: String,
    rt: tokio::runtime::Runtime,
    gh: GitHub,
}

impl Session {
    /// `branch` defaults to the current one; `role` says what it is for.
    fn open(
        planned: &[FileEdit],
        remote: &str,
        github: &GitHubOptions,
        branch: Option<&String>,
        role: &str,
    ) -> Result<Session> {
        let checkout = Checkout::open(planned, remote)?;
        let branch = branch
            .or(checkout.branch.as_ref())
            .cloned()
            .ok_or_else(|| anyhow!("HEAD is detached: pass --branch to name {role}"))?;
        let rt = crate::runtime()?;
        let gh = rt.block_on(connect(github, checkout.remote_url.as_deref()))?;
        Ok(Session {
            checkout,
            branch,
            rt,
            gh,
        })
    }

    /// The bump committed by GitHub on `commit_to`, from the session
    /// branch's files.
    fn api_commit(
        &self,
        specs: &[ImageSpec],
        settings: &CommitSettings<'_>,
        commit_to: &str,
        max_attempts: usize,
    ) -> Result<api_commit::Outcome> {
        let branches = Branches {
            commit_to,
            base: &self.branch,
        };
        Ok(self.rt.block_on(api_commit::commit(
            &self.gh,
            self.checkout.files(),
            specs,
            settings.message,
            branches,
            max_attempts,
        ))?)
    }
}

/// `--commit --commit-via api`: GitHub makes (and signs) the commit.
pub(super) fn commit(
    planned: &[FileEdit],
    specs: &[ImageSpec],
    settings: &CommitSettings<'_>,
    opts: &ApiOptions,
    echo: &dyn Fn(&[FileEdit]),
) -> Result<Delivered> {
    let session = Session::open(
        planned,
        &opts.remote,
        &opts.github,
        opts.branch.as_ref(),
        "the branch to commit on",
    )?;
    let (gh, branch) = (&session.gh, &session.branch);
    let outcome = session.api_commit(specs, settings, branch, opts.max_attempts)?;
    let edits: Vec<FileEdit> = outcome.files.into_iter().map(|(_, e)| e).collect();
    let Some(commit) = outcome.commit else {
        println!("no change: {}@{branch} already carries this bump", gh.repo);
        return Ok(Delivered::new(
            edits,
            &format!("`{branch}` already carried this bump."),
        ));
    };
    echo(&edits);
    let short = &commit.oid[..commit.oid.len().min(12)];
    let tries = after_attempts(outcome.attempts);
    println!(
        "committed {short} on {}@{branch} through the GitHub API{tries}: {}",
        gh.repo, commit.url
    );
    Ok(Delivered::new(
        edits,
        &format!(
            "Committed [`{short}`]({}) on `{branch}` through the GitHub API{tries}.",
            commit.url
        ),
    )
    .output("commit", commit.oid))
}

/// `--pr`: the bump, made fresh on the base's tip, on a branch of its own,
/// proposed (or re-proposed) as a pull request.
pub(super) fn pull_request(
    planned: &[FileEdit],
    specs: &[ImageSpec],
    settings: &CommitSettings<'_>,
    opts: &PrOptions,
    echo: &dyn Fn(&[FileEdit]),
) -> Result<Delivered> {
    let session = Session::open(
        planned,
        &opts.remote,
        &opts.github,
        opts.base.as_ref(),
        "the pull request's base branch",
    )?;
    let (gh, base, rt) = (&session.gh, &session.branch, &session.rt);
    let head = pull_request::branch_name(&opts.branch_template, session.checkout.files())
        .map_err(|e| anyhow!(e))?;
    if head == *base {
        bail!("--pr-branch gives {head:?}, the base branch itself");
    }
    // Asked first: a token GitHub refuses fails the run before anything is pushed.
    let existing = rt
        .block_on(gh.open_pulls(base, Some(&head)))?
        .into_iter()
        .next();

    // The bump on the base's current tip, committed on the head branch.
    let (files, commit) = if opts.via_api {
        let outcome = session.api_commit(specs, settings, &head, opts.max_attempts)?;
        (outcome.files, outcome.commit.map(|c| c.oid))
    } else {
        let token = Some(gh.token());
        let bumped =
            session
                .checkout
                .bump_on_remote_branch(specs, settings, &opts.remote, base, token)?;
        if let Some(commit) = bumped.commit {
            let pushed = session
                .checkout
                .force_push_branch(&opts.remote, &head, commit, token)?;
            if !pushed {
                tracing::info!(%head, "the branch already holds this bump on the current base");
            }
        }
        (bumped.files, bumped.commit.map(|c| c.to_string()))
    };
    let proposal = Proposal {
        base,
        head: &head,
        existing,
        files,
        commit,
    };
    rt.block_on(propose(gh, proposal, settings, opts, echo))
}

/// A bump committed on its branch, to be proposed.
struct Proposal<'a> {
    base: &'a str,
    head: &'a str,
    /// The open pull request from `head`, if any.
    existing: Option<PullRequest>,
    files: Vec<(String, FileEdit)>,
    /// None when the base already carries the bump.
    commit: Option<String>,
}

async fn propose(
    gh: &GitHub,
    proposal: Proposal<'_>,
    settings: &CommitSettings<'_>,
    opts: &PrOptions,
    echo: &dyn Fn(&[FileEdit]),
) -> Result<Delivered> {
    let Proposal {
        base,
        head,
        existing,
        files,
        commit,
    } = proposal;
    let edits: Vec<FileEdit> = files.iter().map(|(_, e)| e.clone()).collect();
    let Some(commit) = commit else {
        let footer = format!("`{base}` already carries this bump.");
        match existing {
            Some(pr) => {
                gh.comment(
                    pr.number,
                    &format!("`{base}` already carries this bump; closing."),
                )
                .await?;
                gh.update_pull(pr.number, &json!({ "state": "closed" }))
                    .await?;
                println!(
                    "no change: {base} already carries this bump; closed #{}",
                    pr.number
                );
            }
            None => println!("no change: {}@{base} already carries this bump", gh.repo),
        }
        return Ok(Delivered::new(edits, &footer));
    };
    echo(&edits);
    let message = (settings.message)(&edits);
    let title = message.lines().next().unwrap_or_default().trim();
    let body = pull_request::body(base, &files);
    let (pr, verb) = match existing {
        Some(pr) => (update(gh, &pr, title, &body).await?, "updated"),
        None => {
            let new = NewPr {
                title,
                body: &body,
                head,
                base,
                draft: opts.draft,
            };
            match gh.create_pull(&new).await {
                Ok(pr) => (pr, "opened"),
                // Another pipeline opened it between our look and our create.
                Err(e) if e.status == Some(422) && e.detail.contains("already exists") => {
                    let pr = gh
                        .open_pulls(base, Some(head))
                        .await?
                        .into_iter()
                        .next()
                        .ok_or(e)?;
                    (update(gh, &pr, title, &body).await?, "updated")
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    println!("{verb} pull request #{}: {}", pr.number, pr.html_url);
    if !opts.labels.is_empty() {
        gh.add_labels(pr.number, &opts.labels).await?;
    }
    if !opts.reviewers.is_empty() {
        gh.request_reviewers(pr.number, &opts.reviewers).await?;
    }
    if let Some(method) = opts.auto_merge {
        let method = match method {
            MergeMethod::Merge => "MERGE",
            MergeMethod::Squash => "SQUASH",
            MergeMethod::Rebase => "REBASE",
        };
        gh.enable_auto_merge(&pr, method).await?;
        println!("auto-merge ({}) enabled", method.to_lowercase());
    }
    let superseded = supersede(gh, base, &pr, &pull_request::entries(&files)).await?;
    let mut footer = format!(
        "{} pull request [#{}]({}) from `{head}`.",
        capitalised(verb),
        pr.number,
        pr.html_url
    );
    for number in &superseded {
        footer.push_str(&format!(" Closed #{number} (superseded)."));
    }
    Ok(Delivered::new(edits, &footer)
        .output("commit", commit)
        .output("pull-request-number", pr.number.to_string())
        .output("pull-request-url", pr.html_url.clone())
        .output("pull-request-branch", head.to_string()))
}

async fn update(gh: &GitHub, pr: &PullRequest, title: &str, body: &str) -> Result<PullRequest> {
    Ok(gh
        .update_pull(pr.number, &json!({ "title": title, "body": body }))
        .await?)
}

/// Closes the open gantry pull requests whose every entry this one sets,
/// with a comment pointing at it, and deletes their branches.
async fn supersede(
    gh: &GitHub,
    base: &str,
    ours: &PullRequest,
    entries: &std::collections::BTreeSet<String>,
) -> Result<Vec<u64>> {
    let mut closed = Vec::new();
    for other in gh.open_pulls(base, None).await? {
        let theirs = other
            .body
            .as_deref()
            .and_then(pull_request::parse_entries)
            .unwrap_or_default();
        if other.number == ours.number || !pull_request::supersedes(entries, &theirs) {
            continue;
        }
        gh.comment(other.number, &format!("Superseded by #{}.", ours.number))
            .await?;
        gh.update_pull(other.number, &json!({ "state": "closed" }))
            .await?;
        let same_repo = other
            .head
            .repo
            .as_ref()
            .is_some_and(|r| r.full_name == gh.repo.to_string());
        if same_repo && other.head.branch != base {
            gh.delete_branch(&other.head.branch).await?;
        }
        println!(
            "closed pull request #{} (superseded by #{})",
            other.number, ours.number
        );
        closed.push(other.number);
    }
    Ok(closed)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The client for the repository, authenticated as a GitHub App when an
/// App id is given, else with `GITHUB_TOKEN`/`GH_TOKEN`.
async fn connect(opts: &GitHubOptions, remote_url: Option<&str>) -> Result<GitHub> {
    let repo = match &opts.repo {
        Some(r) => {
            Repo::parse(r).ok_or_else(|| anyhow!("--github-repo {r:?}: expected OWNER/REPO"))?
        }
        None => remote_url
            .and_then(Repo::from_remote_url)
            .or_else(|| {
                std::env::var("GITHUB_REPOSITORY")
                    .ok()
                    .as_deref()
                    .and_then(Repo::parse)
            })
            .ok_or_else(|| {
                anyhow!(
                    "cannot tell which GitHub repository this is: the remote's URL is not a GitHub \
                     address and GITHUB_REPOSITORY is not set; pass --github-repo OWNER/REPO"
                )
            })?,
    };
    // Unset and empty are the same (a workflow's `${{ vars.X }}` when X is not set).
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let app_id =
        match (opts.app_id, env("GANTRY_GITHUB_APP_ID")) {
            (Some(id), _) => Some(id),
            (None, Some(v)) => Some(v.trim().parse::<u64>().map_err(|_| {
                anyhow!("GANTRY_GITHUB_APP_ID {v:?}: expected the App's numeric id")
            })?),
            (None, None) => None,
        };
    let app_key = opts
        .app_key
        .clone()
        .or_else(|| env("GANTRY_GITHUB_APP_KEY_FILE").map(PathBuf::from));
    let auth = match app_id {
        Some(id) => {
            let key = match &app_key {
                Some(path) => std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the GitHub App key {}", path.display())
                })?,
                None => env("GANTRY_GITHUB_APP_PRIVATE_KEY").ok_or_else(|| {
                    anyhow!(
                        "--github-app-id needs the App's private key: --github-app-key FILE or \
                         GANTRY_GITHUB_APP_PRIVATE_KEY"
                    )
                })?,
            };
            Auth::App {
                id,
                private_key: SecretString::from(key),
            }
        }
        None => Auth::token_from_env().ok_or_else(|| {
            anyhow!(
                "no GitHub credentials: set GITHUB_TOKEN or GH_TOKEN, or pass --github-app-id \
                 with the App's private key"
            )
        })?,
    };
    let api_url = opts
        .api_url
        .clone()
        .unwrap_or_else(|| "https://api.github.com".to_string());
    Ok(GitHub::connect(Settings {
        api_url,
        repo,
        auth,
    })
    .await?)
}
