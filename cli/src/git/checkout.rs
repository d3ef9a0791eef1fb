//! The repository as the GitHub deliveries (`--pr`, `--commit-via api`)
//! read it: its files, branch and remote, and a bump built on a remote tip.

use git2::Oid;
use octocrab::secrecy::SecretString;

use git2::Repository;

use super::transport::{Attempt, copy_objects, fetch, local_path, push_refspec};
use super::workspace::{HeadKind, Workspace, head_kind};
use super::{CommitSettings, Context as _, GitError};
use crate::kustomize::bump::FileEdit;
use crate::kustomize::image_ref::ImageSpec;

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
