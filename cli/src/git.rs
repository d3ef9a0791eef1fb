//! Committing a bump with libgit2 and pushing it without ever losing a race.
//!
//! The commit is built in the object database from the base commit's tree
//! plus the edited files, so the working tree and refs are only touched once
//! the outcome is known. When a push is rejected because another pipeline
//! pushed first, the remote branch is fetched and the *same bump* is applied
//! again to the files as they are on the new tip (never a stale patch), then
//! pushed again, with jittered exponential backoff and a bounded number of
//! attempts. If the new tip already carries the bump, nothing is pushed.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use git2::{
    Commit, Cred, CredentialType, ErrorCode, FetchOptions, FileMode, Oid, PushOptions,
    RemoteCallbacks, Repository, Signature,
};

use octocrab::secrecy::{ExposeSecret as _, SecretString};

use crate::bump::{self, FileEdit, FileError};
use crate::image_ref::ImageSpec;

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

/// The repository that holds the edited files, with their repo-relative paths.
struct Workspace {
    repo: Repository,
    files: Vec<(String, FileEdit)>,
}

impl Workspace {
    fn open(edits: &[FileEdit]) -> Result<Workspace, GitError> {
        let first = edits
            .first()
            .ok_or_else(|| GitError::Invalid("nothing to commit".into()))?;
        let abs = |p: &Path| {
            std::fs::canonicalize(p).map_err(|e| GitError::Io(format!("{}: {e}", p.display())))
        };
        let start = abs(&first.path)?;
        let repo = Repository::discover(start.parent().unwrap_or(&start))
            .ctx(|| format!("{} is not inside a git repository", first.path.display()))?;
        let workdir = repo.workdir().ok_or_else(|| {
            GitError::Invalid("the repository is bare; gantry needs a working tree".into())
        })?;
        let workdir = abs(workdir)?;
        let mut files = Vec::new();
        for edit in edits {
            let rel = abs(&edit.path)?
                .strip_prefix(&workdir)
                .map_err(|_| {
                    GitError::Invalid(format!(
                        "{} is not inside the repository at {} (commit one repository per run)",
                        edit.path.display(),
                        workdir.display()
                    ))
                })?
                .to_string_lossy()
                .into_owned();
            files.push((rel, edit.clone()));
        }
        Ok(Workspace { repo, files })
    }

    /// A fresh handle on a remote per operation: libgit2 reuses a remote's
    /// HTTP connection, which the server may have closed after a rejected push.
    fn remote(&self, name: &str) -> Result<git2::Remote<'_>, GitError> {
        self.repo
            .find_remote(name)
            .ctx(|| format!("no remote named {name:?} in this repository"))
    }

    fn head(&self) -> Result<Commit<'_>, GitError> {
        self.repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .ctx(|| "the repository has no commit to build on".into())
    }

    /// A commit on `parent` whose tree is the parent's with `files` replaced.
    fn build_commit(
        &self,
        parent: &Commit<'_>,
        files: &[(String, FileEdit)],
        settings: &CommitSettings<'_>,
    ) -> Result<Oid, GitError> {
        let repo = &self.repo;
        let base = parent.tree().ctx(|| "cannot read the base tree".into())?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (rel, edit) in files {
            let blob = repo
                .blob(edit.updated.as_bytes())
                .ctx(|| format!("cannot store {rel}"))?;
            let mode = match base.get_path(Path::new(rel)) {
                Ok(entry) if entry.filemode() == i32::from(FileMode::BlobExecutable) => {
                    FileMode::BlobExecutable
                }
                _ => FileMode::Blob,
            };
            update.upsert(rel, blob, mode);
        }
        let tree_id = update
            .create_updated(repo, &base)
            .ctx(|| "cannot build the tree".into())?;
        let tree = repo
            .find_tree(tree_id)
            .ctx(|| "cannot read the new tree".into())?;
        let edits: Vec<FileEdit> = files.iter().map(|(_, e)| e.clone()).collect();
        let (name, email) = settings.author.clone();
        let author = Identity::resolve(name, email, repo);
        let committer = match settings.committer.clone() {
            (None, None) => author.clone(),
            (name, email) => Identity::resolve(name, email, repo),
        };
        repo.commit(
            None,
            &author.signature()?,
            &committer.signature()?,
            &(settings.message)(&edits),
            &tree,
            &[parent],
        )
        .ctx(|| "cannot create the commit".into())
    }

    /// Applies the same bump to the files as they are in `tip`. Files whose
    /// bump is already there drop out; an empty result means nothing to do.
    fn reapply(
        &self,
        tip: &Commit<'_>,
        specs: &[ImageSpec],
    ) -> Result<Vec<(String, FileEdit)>, GitError> {
        let tree = tip.tree().ctx(|| "cannot read the remote tree".into())?;
        let mut out = Vec::new();
        for (rel, edit) in &self.files {
            let entry = tree.get_path(Path::new(rel)).map_err(|_| {
                GitError::Invalid(format!(
                    "{rel} no longer exists on the remote branch; not re-applying the bump"
                ))
            })?;
            let blob = entry
                .to_object(&self.repo)
                .and_then(|o| o.peel_to_blob())
                .ctx(|| format!("cannot read {rel} on the remote branch"))?;
            let text = String::from_utf8(blob.content().to_vec()).map_err(|_| {
                GitError::Invalid(format!("{rel} on the remote branch is not valid UTF-8"))
            })?;
            let fresh = edit.reapply(text, specs)?;
            if !fresh.changes.is_empty() {
                out.push((rel.clone(), fresh));
            }
        }
        Ok(out)
    }
}

/// How HEAD relates to the branch being pushed: only a HEAD on that branch
/// (or a detached HEAD) follows the pushed commit.
enum HeadKind {
    Branch(String),
    Detached,
}

fn head_kind(repo: &Repository) -> Result<HeadKind, GitError> {
    let head = repo.head().ctx(|| "cannot read HEAD".into())?;
    Ok(match head.name() {
        Ok(name) if head.is_branch() => HeadKind::Branch(name.to_string()),
        _ => HeadKind::Detached,
    })
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

/// Commits the edits on HEAD and pushes, re-applying the bump on the new
/// remote tip as often as a race requires. The local repository is only
/// changed after the push succeeded.
pub fn commit_and_push(
    edits: &[FileEdit],
    specs: &[ImageSpec],
    settings: &CommitSettings<'_>,
    push: &PushSettings,
) -> Result<Outcome, GitError> {
    let ws = Workspace::open(edits)?;
    let head = ws.head()?;
    let kind = head_kind(&ws.repo)?;
    let branch = match (&push.branch, &kind) {
        (Some(b), _) => b.clone(),
        (None, HeadKind::Branch(name)) => name.trim_start_matches("refs/heads/").to_string(),
        (None, HeadKind::Detached) => {
            return Err(GitError::Invalid(
                "HEAD is detached: pass --branch to say where to push".into(),
            ));
        }
    };
    let remote = || ws.remote(&push.remote);
    remote()?;

    // (base the commit is built on, commit to push, edits it carries)
    let first = ws.build_commit(&head, &ws.files, settings)?;
    let state = RefCell::new((head.id(), Some(first), ws.files.clone()));
    let attempts = Cell::new(0usize);
    let attempt = || -> Result<(), Attempt> {
        attempts.set(attempts.get() + 1);
        if attempts.get() > 1 {
            // Lost a race: rebuild the same bump on the new remote tip.
            let tip_id = remote()
                .and_then(|mut r| fetch(&ws.repo, &mut r, &branch, push.token.as_ref()))
                .map_err(Attempt::Fatal)?;
            let tip = ws
                .repo
                .find_commit(tip_id)
                .ctx(|| "cannot read the fetched tip".into())
                .map_err(Attempt::Fatal)?;
            let (base, _, _) = *state.borrow();
            let base_is_upstream =
                tip_id == base || ws.repo.graph_descendant_of(tip_id, base).unwrap_or(false);
            if !base_is_upstream {
                return Err(Attempt::Fatal(GitError::Invalid(format!(
                    "{}/{branch} does not contain the commit the bump was based on ({}): the branch was \
                     rewritten, or the local branch has commits that were never pushed; push or rebase \
                     them first",
                    push.remote,
                    short(base)
                ))));
            }
            let files = ws.reapply(&tip, specs).map_err(Attempt::Fatal)?;
            let commit = if files.is_empty() {
                None
            } else {
                Some(
                    ws.build_commit(&tip, &files, settings)
                        .map_err(Attempt::Fatal)?,
                )
            };
            *state.borrow_mut() = (tip_id, commit, files);
        }
        let Some(commit) = state.borrow().1 else {
            return Ok(()); // upstream already carries this bump
        };
        push_commit(
            &ws.repo,
            &mut remote().map_err(Attempt::Fatal)?,
            commit,
            &branch,
            push.token.as_ref(),
        )
    };
    // Concurrent pipelines must not sleep in step: seed the jitter per process.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(push.min_delay)
        .with_max_delay(push.max_delay)
        .with_max_times(push.max_attempts.saturating_sub(1))
        .with_jitter()
        .with_jitter_seed(seed);
    let result = attempt
        .retry(backoff)
        .sleep(std::thread::sleep)
        .when(|e| matches!(e, Attempt::Race(_)))
        .notify(|e, delay| tracing::info!(reason = %e.reason(), ?delay, "push lost a race; re-applying the bump on the new remote tip"))
        .call();
    let attempts = attempts.get();
    match result {
        Ok(()) => {}
        Err(Attempt::Fatal(e)) => return Err(e),
        Err(Attempt::Race(reason)) => {
            return Err(GitError::RaceLost {
                remote: push.remote.clone(),
                branch,
                attempts,
                reason,
            });
        }
        Err(Attempt::Rejected(reason)) => {
            return Err(GitError::RemoteRejected {
                remote: push.remote.clone(),
                branch,
                reason,
            });
        }
    }
    let (base, commit, files) = state.into_inner();
    let final_id = commit.unwrap_or(base);
    let final_commit = ws
        .repo
        .find_commit(final_id)
        .ctx(|| "cannot read the pushed commit".into())?;
    let tracking = format!("refs/remotes/{}/{branch}", push.remote);
    ws.repo
        .reference(&tracking, final_id, true, "gantry: push")
        .ctx(|| format!("cannot update {tracking}"))?;
    let follows = match &kind {
        HeadKind::Branch(name) => name.trim_start_matches("refs/heads/") == branch,
        HeadKind::Detached => true,
    };
    if follows {
        advance_local(&ws.repo, &files, &head, &final_commit, &kind)?;
    } else {
        tracing::info!(%branch, "HEAD is on another branch: the working tree is left as it was");
    }
    Ok(Outcome {
        commit: final_id,
        edits: files.into_iter().map(|(_, e)| e).collect(),
        attempts,
        pushed_to: Some((push.remote.clone(), branch)),
    })
}

/// The repository holding a bump's files, opened once for the GitHub
/// deliveries (`--pr`, `--commit-via api`).
pub struct Checkout {
    ws: Workspace,
    /// The current branch; None on a detached HEAD.
    pub branch: Option<String>,
    /// The URL of the remote named when opening, if it exists.
    pub remote_url: Option<String>,
}

/// A bump built on a remote branch's tip, for a pull request.
pub struct BranchBump {
    /// The bump's commit on the tip; None when the tip already carries it.
    pub commit: Option<Oid>,
    /// The edits as applied to the tip, with repo-relative paths.
    pub files: Vec<(String, FileEdit)>,
}

impl Checkout {
    pub fn open(edits: &[FileEdit], remote: &str) -> Result<Checkout, GitError> {
        let ws = Workspace::open(edits)?;
        let branch = match head_kind(&ws.repo)? {
            HeadKind::Branch(name) => Some(name.trim_start_matches("refs/heads/").to_string()),
            HeadKind::Detached => None,
        };
        let remote_url = ws
            .repo
            .find_remote(remote)
            .ok()
            .and_then(|r| r.url().ok().map(String::from));
        Ok(Checkout {
            ws,
            branch,
            remote_url,
        })
    }

    /// The edited files with their repo-relative paths.
    pub fn files(&self) -> &[(String, FileEdit)] {
        &self.ws.files
    }

    /// Fetches `base` and applies the same bump to its files, building the
    /// commit in the object database only: the working tree, the index and
    /// every local branch stay as they were.
    pub fn bump_on_remote_branch(
        &self,
        specs: &[ImageSpec],
        settings: &CommitSettings<'_>,
        remote: &str,
        base: &str,
        token: Option<&SecretString>,
    ) -> Result<BranchBump, GitError> {
        let ws = &self.ws;
        let tip_id = fetch(&ws.repo, &mut ws.remote(remote)?, base, token)?;
        let tip = ws
            .repo
            .find_commit(tip_id)
            .ctx(|| format!("cannot read {remote}/{base}"))?;
        let files = ws.reapply(&tip, specs)?;
        let commit = if files.is_empty() {
            None
        } else {
            Some(ws.build_commit(&tip, &files, settings)?)
        };
        Ok(BranchBump { commit, files })
    }

    /// Points `branch` on the remote at `commit`, overwriting it (the branch
    /// belongs to the bump) — unless it already holds a commit with the same
    /// parent and tree, so a re-run does not restart the checks for nothing.
    /// Returns whether anything was pushed.
    pub fn force_push_branch(
        &self,
        remote: &str,
        branch: &str,
        commit: Oid,
        token: Option<&SecretString>,
    ) -> Result<bool, GitError> {
        let (ws, repo) = (&self.ws, &self.ws.repo);
        let ours = repo
            .find_commit(commit)
            .ctx(|| "cannot read the bump commit".into())?;
        // A tracking ref left by an earlier run may outlive the remote branch
        // (merged and deleted): only a fresh fetch may say the branch holds it.
        if let Ok(mut stale) = repo.find_reference(&format!("refs/remotes/{remote}/{branch}")) {
            stale
                .delete()
                .ctx(|| format!("cannot delete {remote}/{branch}'s tracking ref"))?;
        }
        if let Ok(existing) = fetch(repo, &mut ws.remote(remote)?, branch, token)
            && let Ok(theirs) = repo.find_commit(existing)
            && theirs.tree_id() == ours.tree_id()
            && theirs.parent_ids().eq(ours.parent_ids())
        {
            return Ok(false);
        }
        let mut r = ws.remote(remote)?;
        if let Some(path) = r.url().ok().and_then(local_path) {
            let target = Repository::open(&path)
                .ctx(|| format!("cannot open the remote at {}", path.display()))?;
            copy_objects(repo, &target, commit)
                .ctx(|| format!("cannot copy objects to {}", path.display()))?;
            target
                .reference(
                    &format!("refs/heads/{branch}"),
                    commit,
                    true,
                    "gantry: pull request",
                )
                .ctx(|| format!("cannot update {branch} in {}", path.display()))?;
            return Ok(true);
        }
        match push_refspec(&mut r, &format!("+{commit}:refs/heads/{branch}"), token) {
            Ok(()) => Ok(true),
            Err(Attempt::Fatal(e)) => Err(e),
            Err(Attempt::Race(reason) | Attempt::Rejected(reason)) => {
                Err(GitError::RemoteRejected {
                    remote: remote.to_string(),
                    branch: branch.to_string(),
                    reason,
                })
            }
        }
    }
}

/// One push attempt's failure.
#[derive(Debug)]
enum Attempt {
    /// Another push won: worth fetching and trying again.
    Race(String),
    /// The remote refused for another reason (hook, protected branch).
    Rejected(String),
    Fatal(GitError),
}

impl Attempt {
    fn reason(&self) -> String {
        match self {
            Attempt::Race(r) | Attempt::Rejected(r) => r.clone(),
            Attempt::Fatal(e) => e.to_string(),
        }
    }
}

fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_string()
}

/// Messages with which git servers report that the ref moved under us.
fn is_race(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "non-fast-forward",
        "fetch first",
        "failed to update ref",
        "cannot lock ref",
        "failed to lock",
        "stale info",
        "incorrect old value",
    ]
    .iter()
    .any(|s| m.contains(s))
}

fn push_commit(
    repo: &Repository,
    remote: &mut git2::Remote<'_>,
    commit: Oid,
    branch: &str,
    token: Option<&SecretString>,
) -> Result<(), Attempt> {
    if let Some(path) = remote.url().ok().and_then(local_path) {
        return push_local(repo, &path, commit, branch);
    }
    let refspec = format!("{commit}:refs/heads/{branch}");
    push_refspec(remote, &refspec, token)
}

fn push_refspec(
    remote: &mut git2::Remote<'_>,
    refspec: &str,
    token: Option<&SecretString>,
) -> Result<(), Attempt> {
    let status = RefCell::new(None::<String>);
    let mut callbacks = credentials(token);
    callbacks.push_update_reference(|_, message| {
        if let Some(m) = message {
            *status.borrow_mut() = Some(m.to_string());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    let pushed = remote.push(&[refspec], Some(&mut options));
    drop(options);
    match pushed {
        Err(e) if e.code() == ErrorCode::NotFastForward => {
            Err(Attempt::Race(e.message().to_string()))
        }
        Err(e) => Err(Attempt::Fatal(GitError::Git {
            context: "push failed".into(),
            cause: e,
        })),
        Ok(()) => match status.into_inner() {
            None => Ok(()),
            Some(m) if is_race(&m) => Err(Attempt::Race(m)),
            Some(m) => Err(Attempt::Rejected(m)),
        },
    }
}

/// The path of a remote on this machine (`file://` or a plain path).
fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(PathBuf::from(p));
    }
    let scp_like = url
        .split_once(':')
        .is_some_and(|(host, _)| !host.contains('/'));
    (!url.contains("://") && !scp_like).then(|| PathBuf::from(url))
}

/// libgit2's local transport overwrites the remote ref without checking
/// that it still holds the value it advertised, so two pipelines pushing at
/// once could silently drop a commit. For a remote on this machine, copy the
/// new objects straight into its object database and move the branch with a
/// compare-and-swap under the ref lock instead.
fn push_local(repo: &Repository, path: &Path, commit: Oid, branch: &str) -> Result<(), Attempt> {
    let fatal = |context: String| move |cause| Attempt::Fatal(GitError::Git { context, cause });
    let target = Repository::open(path).map_err(fatal(format!(
        "cannot open the remote at {}",
        path.display()
    )))?;
    let refname = format!("refs/heads/{branch}");
    let current = target.refname_to_id(&refname).ok();
    if let Some(current) = current {
        if current == commit {
            return Ok(());
        }
        if !repo.graph_descendant_of(commit, current).unwrap_or(false) {
            return Err(Attempt::Race(
                "non-fast-forward: the remote branch has moved".into(),
            ));
        }
    }
    copy_objects(repo, &target, commit)
        .map_err(fatal(format!("cannot copy objects to {}", path.display())))?;
    let moved = match current {
        Some(current) => target.reference_matching(&refname, commit, true, current, "gantry: push"),
        None => target.reference(&refname, commit, false, "gantry: push"),
    };
    match moved {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
            ) =>
        {
            Err(Attempt::Race(format!(
                "the remote branch moved during the push: {}",
                e.message()
            )))
        }
        Err(e) => Err(fatal(format!(
            "cannot update {refname} in {}",
            path.display()
        ))(e)),
    }
}

/// Copies every object reachable from `tip` that `to` lacks. An object that
/// exists in `to` is assumed complete (as git does), which prunes the walk.
fn copy_objects(from: &Repository, to: &Repository, tip: Oid) -> Result<(), git2::Error> {
    let (src, dst) = (from.odb()?, to.odb()?);
    let copy = |oid: Oid| -> Result<bool, git2::Error> {
        if dst.exists(oid) {
            return Ok(false);
        }
        let object = src.read(oid)?;
        dst.write(object.kind(), object.data())?;
        Ok(true)
    };
    let mut commits = vec![tip];
    while let Some(id) = commits.pop() {
        if dst.exists(id) {
            continue;
        }
        let commit = from.find_commit(id)?;
        let mut trees = vec![commit.tree_id()];
        while let Some(tree_id) = trees.pop() {
            if dst.exists(tree_id) {
                continue;
            }
            for entry in from.find_tree(tree_id)?.iter() {
                match entry.kind() {
                    Some(git2::ObjectType::Tree) => trees.push(entry.id()),
                    Some(git2::ObjectType::Blob) => {
                        copy(entry.id())?;
                    }
                    _ => {} // submodule commits live elsewhere
                }
            }
            copy(tree_id)?;
        }
        copy(id)?;
        commits.extend(commit.parent_ids());
    }
    Ok(())
}

fn fetch(
    repo: &Repository,
    remote: &mut git2::Remote<'_>,
    branch: &str,
    token: Option<&SecretString>,
) -> Result<Oid, GitError> {
    let name = remote.name().ok().flatten().unwrap_or("origin").to_string();
    let tracking = format!("refs/remotes/{name}/{branch}");
    if let Some(path) = remote.url().ok().and_then(local_path) {
        // The local transport trips over refs that vanish while it lists them.
        let source = Repository::open(&path)
            .ctx(|| format!("cannot open the remote at {}", path.display()))?;
        let tip = source
            .refname_to_id(&format!("refs/heads/{branch}"))
            .ctx(|| format!("{name} has no branch {branch}"))?;
        copy_objects(&source, repo, tip).ctx(|| format!("cannot fetch {name}/{branch}"))?;
        repo.reference(&tracking, tip, true, "gantry: fetch")
            .ctx(|| format!("cannot update {tracking}"))?;
        return Ok(tip);
    }
    let mut options = FetchOptions::new();
    options.remote_callbacks(credentials(token));
    remote
        .fetch(
            &[format!("+refs/heads/{branch}:{tracking}")],
            Some(&mut options),
            None,
        )
        .ctx(|| format!("cannot fetch {name}/{branch}"))?;
    repo.refname_to_id(&tracking)
        .ctx(|| format!("{name} has no branch {branch}"))
}

/// Credentials for remotes: a token from the environment for https (as
/// GitHub Actions uses `GITHUB_TOKEN`), the SSH agent or a key for ssh.
/// Tokens are only handed to libgit2, never printed.
fn credentials(token: Option<&SecretString>) -> RemoteCallbacks<'static> {
    let given = token.map(|t| t.expose_secret().to_string());
    let mut callbacks = RemoteCallbacks::new();
    let mut tries = 0;
    callbacks.credentials(move |url, username, allowed| {
        tries += 1;
        if tries > 3 {
            return Err(git2::Error::from_str(
                "authentication failed: the remote refused the credentials",
            ));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let token = given.clone().or_else(|| {
                ["GANTRY_GIT_TOKEN", "GITHUB_TOKEN", "GH_TOKEN"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|t| !t.is_empty()))
            });
            if let Some(token) = token {
                let user = std::env::var("GANTRY_GIT_USERNAME")
                    .ok()
                    .or(username.map(String::from));
                return Cred::userpass_plaintext(
                    user.as_deref().unwrap_or("x-access-token"),
                    &token,
                );
            }
            let config = git2::Config::open_default()?;
            return Cred::credential_helper(&config, url, username).map_err(|_| {
                git2::Error::from_str(
                    "the remote needs credentials: set GANTRY_GIT_TOKEN or GITHUB_TOKEN",
                )
            });
        }
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            if tries == 1 && std::env::var_os("SSH_AUTH_SOCK").is_some() {
                return Cred::ssh_key_from_agent(user);
            }
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            let key = std::env::var_os("GANTRY_SSH_KEY")
                .map(PathBuf::from)
                .or_else(|| {
                    ["id_ed25519", "id_ecdsa", "id_rsa"]
                        .iter()
                        .map(|k| home.join(".ssh").join(k))
                        .find(|p| p.exists())
                });
            if let Some(key) = key {
                let passphrase = std::env::var("GANTRY_SSH_KEY_PASSPHRASE").ok();
                return Cred::ssh_key(user, None, &key, passphrase.as_deref());
            }
            return Err(git2::Error::from_str(
                "no SSH agent and no key: set SSH_AUTH_SOCK or GANTRY_SSH_KEY",
            ));
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        Cred::default()
    });
    callbacks
}

/// Moves HEAD to `new` and brings the working tree and index along: the
/// bumped files are written atomically, files that changed upstream are
/// checked out (refusing to overwrite local modifications).
fn advance_local(
    repo: &Repository,
    files: &[(String, FileEdit)],
    old: &Commit<'_>,
    new: &Commit<'_>,
    kind: &HeadKind,
) -> Result<(), GitError> {
    let ours: Vec<&str> = files.iter().map(|(rel, _)| rel.as_str()).collect();
    let old_tree = old.tree().ctx(|| "cannot read HEAD's tree".into())?;
    let new_tree = new.tree().ctx(|| "cannot read the new tree".into())?;
    let diff = repo
        .diff_tree_to_tree(Some(&old_tree), Some(&new_tree), None)
        .ctx(|| "cannot compare trees".into())?;
    let upstream: Vec<PathBuf> = diff
        .deltas()
        .filter_map(|d| {
            d.new_file()
                .path()
                .or(d.old_file().path())
                .map(Path::to_path_buf)
        })
        .filter(|p| !ours.iter().any(|o| Path::new(o) == p))
        .collect();
    if !upstream.is_empty() {
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.safe();
        for p in &upstream {
            checkout.path(p);
        }
        repo.checkout_tree(new.as_object(), Some(&mut checkout))
            .ctx(|| {
                "cannot update the working tree to the pushed commit (local changes in the way?)"
                    .into()
            })?;
    }
    let workdir = repo.workdir().expect("checked in Workspace::open");
    let mut index = repo.index().ctx(|| "cannot read the index".into())?;
    for rel in &ours {
        let entry = new_tree
            .get_path(Path::new(rel))
            .ctx(|| format!("{rel} is not in the new commit"))?;
        let blob = repo
            .find_blob(entry.id())
            .ctx(|| format!("cannot read {rel}"))?;
        let path = workdir.join(rel);
        bump::write_atomically(&path, blob.content())
            .map_err(|e| GitError::Io(format!("{}: {e}", path.display())))?;
        index
            .add_path(Path::new(rel))
            .ctx(|| format!("cannot stage {rel}"))?;
    }
    index.write().ctx(|| "cannot write the index".into())?;
    let message = format!("gantry: bump ({})", short(new.id()));
    match kind {
        HeadKind::Branch(name) => repo.reference(name, new.id(), true, &message).map(|_| ()),
        HeadKind::Detached => repo.set_head_detached(new.id()),
    }
    .ctx(|| "cannot move HEAD".into())
}
