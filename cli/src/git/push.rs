//! Commit and push, surviving races: when a push is rejected because
//! another pipeline pushed first, the same bump is applied again on the new
//! remote tip (never a stale patch), with jittered exponential backoff and
//! a bounded number of attempts.

use std::cell::{Cell, RefCell};

use backon::{BlockingRetryable as _, ExponentialBuilder};
use git2::Oid;

use super::transport::{Attempt, fetch, push_commit};
use super::workspace::{HeadKind, Workspace, advance_local, head_kind};
use super::{CommitSettings, Context as _, GitError, Outcome, PushSettings, short};
use crate::kustomize::bump::FileEdit;
use crate::kustomize::image_ref::ImageSpec;

/// What an attempt pushes: the base it was built on, the commit (None when
/// the base already carries the bump) and the edits it carries.
type Built = (Oid, Option<Oid>, Vec<(String, FileEdit)>);

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
    ws.remote(&push.remote)?;

    let first = ws.build_commit(&head, &ws.files, settings)?;
    let state = RefCell::new((head.id(), Some(first), ws.files.clone()));
    let attempts = Cell::new(0usize);
    let attempt = || -> Result<(), Attempt> {
        attempts.set(attempts.get() + 1);
        if attempts.get() > 1 {
            let base = state.borrow().0;
            let rebuilt = rebuild_on_tip(&ws, push, &branch, base, specs, settings)
                .map_err(Attempt::Fatal)?;
            *state.borrow_mut() = rebuilt;
        }
        let Some(commit) = state.borrow().1 else {
            return Ok(()); // upstream already carries this bump
        };
        let mut remote = ws.remote(&push.remote).map_err(Attempt::Fatal)?;
        push_commit(&ws.repo, &mut remote, commit, &branch, push.token.as_ref())
    };
    let result = attempt
        .retry(backoff(push))
        .sleep(std::thread::sleep)
        .when(|e| matches!(e, Attempt::Race(_)))
        .notify(|e, delay| tracing::info!(reason = %e.reason(), ?delay, "push lost a race; re-applying the bump on the new remote tip"))
        .call();
    let attempts = attempts.get();
    settle(result, push, &branch, attempts)?;

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

/// After a lost race: fetches the remote tip and builds the same bump on
/// it. Refuses when the tip does not contain `base` (a rewritten branch, or
/// local commits never pushed), which a retry cannot fix.
fn rebuild_on_tip(
    ws: &Workspace,
    push: &PushSettings,
    branch: &str,
    base: Oid,
    specs: &[ImageSpec],
    settings: &CommitSettings<'_>,
) -> Result<Built, GitError> {
    let tip_id = fetch(
        &ws.repo,
        &mut ws.remote(&push.remote)?,
        branch,
        push.token.as_ref(),
    )?;
    let tip = ws
        .repo
        .find_commit(tip_id)
        .ctx(|| "cannot read the fetched tip".into())?;
    let base_is_upstream =
        tip_id == base || ws.repo.graph_descendant_of(tip_id, base).unwrap_or(false);
    if !base_is_upstream {
        return Err(GitError::Invalid(format!(
            "{}/{branch} does not contain the commit the bump was based on ({}): the branch was \
             rewritten, or the local branch has commits that were never pushed; push or rebase \
             them first",
            push.remote,
            short(base)
        )));
    }
    let files = ws.reapply(&tip, specs)?;
    let commit = if files.is_empty() {
        None
    } else {
        Some(ws.build_commit(&tip, &files, settings)?)
    };
    Ok((tip_id, commit, files))
}

/// Jittered exponential backoff between attempts. Concurrent pipelines must
/// not sleep in step: the jitter is seeded per process.
fn backoff(push: &PushSettings) -> ExponentialBuilder {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    ExponentialBuilder::default()
        .with_min_delay(push.min_delay)
        .with_max_delay(push.max_delay)
        .with_max_times(push.max_attempts.saturating_sub(1))
        .with_jitter()
        .with_jitter_seed(seed)
}

/// The last attempt's failure as the error the user sees.
fn settle(
    result: Result<(), Attempt>,
    push: &PushSettings,
    branch: &str,
    attempts: usize,
) -> Result<(), GitError> {
    match result {
        Ok(()) => Ok(()),
        Err(Attempt::Fatal(e)) => Err(e),
        Err(Attempt::Race(reason)) => Err(GitError::RaceLost {
            remote: push.remote.clone(),
            branch: branch.to_string(),
            attempts,
            reason,
        }),
        Err(Attempt::Rejected(reason)) => Err(GitError::RemoteRejected {
            remote: push.remote.clone(),
            branch: branch.to_string(),
            reason,
        }),
    }
}
