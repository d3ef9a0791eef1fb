//! Committing a bump with libgit2 and pushing it without ever losing a race.
//!
//! The commit is built in the object database from the base commit's tree
//! plus the edited files, so the working tree and refs are only touched once
//! the outcome is known. When a push is rejected because another pipeline
//! pushed first, the remote branch is fetched and the *same bump* is applied
//! again to the files as they are on the new tip (never a stale patch), then
//! pushed again, with jittered exponential backoff and a bounded number of
//! attempts. If the new tip already carries the bump, nothing is pushed.
//!
//! `workspace`: the repository, commits built in the object database, the
//! local side after a commit; `push`: the race-surviving push; `transport`:
//! fetch, push and credentials; `checkout`: the repository as the GitHub
//! deliveries read it.

use std::time::Duration;

use git2::{Oid, Repository, Signature};
use octocrab::secrecy::SecretString;

use crate::kustomize::bump::{FileEdit, FileError};

mod checkout;
mod push;
mod transport;
mod workspace;

pub use checkout::{BranchBump, Checkout};
pub use push::commit_and_push;

use workspace::{Workspace, advance_local, head_kind};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{context}: {}", cause.message())]
    Git { context: String, cause: git2::Error },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
    #[error("push to {remote}/{branch} was rejected: {reason}")]
    RemoteRejected {
        remote: String,
        branch: String,
        reason: String,
    },
    #[error(
        "push to {remote}/{branch} still lost the race after {attempts} attempts \
         (last: {reason}); nothing was changed locally, run the bump again"
    )]
    RaceLost {
        remote: String,
        branch: String,
        attempts: usize,
        reason: String,
    },
}

trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GitError>;
}

impl<T> Context<T> for Result<T, git2::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GitError> {
        self.map_err(|cause| GitError::Git {
            context: context(),
            cause,
        })
    }
}

/// Who a commit is by.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    const BOT: (&str, &str) = ("gantry[bot]", "gantry-bot@users.noreply.github.com");

    /// Flags/env first, then the GitHub Actions actor, then git config, then a bot.
    pub fn resolve(name: Option<String>, email: Option<String>, repo: &Repository) -> Identity {
        let actor = std::env::var("GITHUB_ACTOR").ok().filter(|a| !a.is_empty());
        let (fallback_name, fallback_email) = match (&actor, repo.signature()) {
            (Some(actor), _) => {
                let email = match std::env::var("GITHUB_ACTOR_ID") {
                    Ok(id) if !id.is_empty() => format!("{id}+{actor}@users.noreply.github.com"),
                    _ => format!("{actor}@users.noreply.github.com"),
                };
                (actor.clone(), email)
            }
            (None, Ok(sig)) => (
                sig.name().unwrap_or(Self::BOT.0).to_string(),
                sig.email().unwrap_or(Self::BOT.1).to_string(),
            ),
            (None, Err(_)) => (Self::BOT.0.to_string(), Self::BOT.1.to_string()),
        };
        Identity {
            name: name.unwrap_or(fallback_name),
            email: email.unwrap_or(fallback_email),
        }
    }

    fn signature(&self) -> Result<Signature<'static>, GitError> {
        Signature::now(&self.name, &self.email)
            .ctx(|| format!("invalid identity {} <{}>", self.name, self.email))
    }
}

/// What to commit with.
pub struct CommitSettings<'a> {
    /// Name and email from flags or environment; what is missing is resolved
    /// by [`Identity::resolve`]. The committer defaults to the author.
    pub author: (Option<String>, Option<String>),
    pub committer: (Option<String>, Option<String>),
    /// Renders the message from the edits actually committed (they differ
    /// from the first plan when a race made us re-apply the bump).
    pub message: &'a dyn Fn(&[FileEdit]) -> String,
}

pub struct PushSettings {
    pub remote: String,
    /// A token for HTTPS remotes instead of the environment's (a GitHub
    /// App's installation token). Never printed.
    pub token: Option<SecretString>,
    pub branch: Option<String>,
    pub max_attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

/// The result of a commit, pushed or not.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The commit that holds the bump (ours, or an upstream one that already had it).
    pub commit: Oid,
    /// The edits as finally committed; empty when upstream already had them.
    pub edits: Vec<FileEdit>,
    pub attempts: usize,
    pub pushed_to: Option<(String, String)>,
}

/// Commits the edits on HEAD and updates the working tree and index.
pub fn commit(edits: &[FileEdit], settings: &CommitSettings<'_>) -> Result<Outcome, GitError> {
    let ws = Workspace::open(edits)?;
    let head = ws.head()?;
    let oid = ws.build_commit(&head, &ws.files, settings)?;
    let new = ws
        .repo
        .find_commit(oid)
        .ctx(|| "cannot read the new commit".into())?;
    advance_local(&ws.repo, &ws.files, &head, &new, &head_kind(&ws.repo)?)?;
    Ok(Outcome {
        commit: oid,
        edits: edits.to_vec(),
        attempts: 1,
        pushed_to: None,
    })
}

fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_string()
}
