//! The repository holding a bump's files: commits built in the object
//! database from a base tree plus the edited files, and the local side
//! (HEAD, index, working tree) moved only once the outcome is known.

use std::path::{Path, PathBuf};

use git2::{Commit, FileMode, Oid, Repository};

use super::{CommitSettings, Context as _, GitError, Identity, short};
use crate::kustomize::bump::{self, FileEdit};
use crate::kustomize::image_ref::ImageSpec;

/// The repository that holds the edited files, with their repo-relative paths.
pub(super) struct Workspace {
    pub(super) repo: Repository,
    pub(super) files: Vec<(String, FileEdit)>,
}

impl Workspace {
    pub(super) fn open(edits: &[FileEdit]) -> Result<Workspace, GitError> {
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
    pub(super) fn remote(&self, name: &str) -> Result<git2::Remote<'_>, GitError> {
        self.repo
            .find_remote(name)
            .ctx(|| format!("no remote named {name:?} in this repository"))
    }

    pub(super) fn head(&self) -> Result<Commit<'_>, GitError> {
        self.repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .ctx(|| "the repository has no commit to build on".into())
    }

    /// A commit on `parent` whose tree is the parent's with `files` replaced.
    pub(super) fn build_commit(
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
    pub(super) fn reapply(
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
pub(super) enum HeadKind {
    Branch(String),
    Detached,
}

pub(super) fn head_kind(repo: &Repository) -> Result<HeadKind, GitError> {
    let head = repo.head().ctx(|| "cannot read HEAD".into())?;
    Ok(match head.name() {
        Ok(name) if head.is_branch() => HeadKind::Branch(name.to_string()),
        _ => HeadKind::Detached,
    })
}

/// Moves HEAD to `new` and brings the working tree and index along: the
/// bumped files are written atomically, files that changed upstream are
/// checked out (refusing to overwrite local modifications).
pub(super) fn advance_local(
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
