//! Committing a bump with GitHub's `createCommitOnBranch`, so GitHub signs
//! the commit ("Verified") even when the token is a GitHub App's. The
//! guarantee is the git push path's: `expectedHeadOid` is the lock, and when
//! another commit landed first the branch is read again and the *same bump*
//! applied to its fresh files, never a stale patch.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

use crate::github::client::{ApiCommit, ApiError, GitHub};
use crate::kustomize::bump::{FileEdit, FileError};
use crate::kustomize::image_ref::ImageSpec;

#[derive(Debug, thiserror::Error)]
pub enum ApiCommitError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{repo} has no branch {branch}")]
    NoBranch { repo: String, branch: String },
    #[error(
        "the commit to {branch} still lost the race after {attempts} attempts; nothing was \
         changed, run the bump again"
    )]
    RaceLost { branch: String, attempts: usize },
}

/// Where the commit goes.
pub struct Branches<'a> {
    /// The branch the commit is made on.
    pub commit_to: &'a str,
    /// The branch whose files the bump is applied to. When it differs from
    /// `commit_to` (a pull request's base), `commit_to` is first pointed at
    /// its tip.
    pub base: &'a str,
}

pub struct Outcome {
    /// None when the base already carries the bump.
    pub commit: Option<ApiCommit>,
    /// The edits as committed, repo-relative.
    pub files: Vec<(String, FileEdit)>,
    pub attempts: usize,
}

pub async fn commit(
    gh: &GitHub,
    files: &[(String, FileEdit)],
    specs: &[ImageSpec],
    message: &dyn Fn(&[FileEdit]) -> String,
    branches: Branches<'_>,
    max_attempts: usize,
) -> Result<Outcome, ApiCommitError> {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(max_attempts.saturating_sub(1))
        .with_jitter()
        .build();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let head =
            gh.branch_head(branches.base)
                .await?
                .ok_or_else(|| ApiCommitError::NoBranch {
                    repo: gh.repo.to_string(),
                    branch: branches.base.to_string(),
                })?;
        let mut fresh = Vec::new();
        for (rel, edit) in files {
            let edit = edit.reapply(gh.file_text(rel, &head).await?, specs)?;
            if !edit.changes.is_empty() {
                fresh.push((rel.clone(), edit));
            }
        }
        if fresh.is_empty() {
            return Ok(Outcome {
                commit: None,
                files: fresh,
                attempts: attempt,
            });
        }
        if branches.commit_to != branches.base {
            gh.reset_branch(branches.commit_to, &head).await?;
        }
        let edits: Vec<FileEdit> = fresh.iter().map(|(_, e)| e.clone()).collect();
        let contents: Vec<(String, String)> = fresh
            .iter()
            .map(|(rel, e)| (rel.clone(), e.updated.clone()))
            .collect();
        match gh
            .create_commit_on_branch(branches.commit_to, &head, &message(&edits), &contents)
            .await
        {
            Ok(commit) => {
                return Ok(Outcome {
                    commit: Some(commit),
                    files: fresh,
                    attempts: attempt,
                });
            }
            Err(e) if e.is_stale_head() => match delays.next() {
                Some(delay) => {
                    tracing::info!(
                        branch = branches.commit_to,
                        ?delay,
                        "the branch moved; re-applying the bump on its new tip"
                    );
                    tokio::time::sleep(delay).await;
                }
                None => {
                    return Err(ApiCommitError::RaceLost {
                        branch: branches.commit_to.to_string(),
                        attempts: attempt,
                    });
                }
            },
            Err(e) => return Err(e.into()),
        }
    }
}
