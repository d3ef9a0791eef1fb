//! `gantry bump`: find the kustomization files, plan their edits, write them.
//!
//! Planning reads and edits in memory only; nothing touches the disk until
//! every file has been read and edited without error, and then each file is
//! replaced atomically.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::kustomize::editor::{self, EditError, ImageChange, Missing};
use crate::kustomize::image_ref::ImageSpec;

/// File names kustomize accepts for a kustomization, in its order of preference.
pub const KUSTOMIZATION_NAMES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// An error about one file, at a line and column when it has one.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}:{}", path.display(), source)]
    Edit { path: PathBuf, source: EditError },
    #[error("{}: {message}", path.display())]
    Other { path: PathBuf, message: String },
}

impl FileError {
    fn other(path: &Path, message: impl Into<String>) -> Self {
        FileError::Other {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            FileError::Edit { path, .. } | FileError::Other { path, .. } => path,
        }
    }

    /// 1-based line and column, where the error has a position.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            FileError::Edit { source, .. } => Some((source.line, source.col)),
            FileError::Other { .. } => None,
        }
    }
}

/// The planned edit of one file.
#[derive(Debug, Clone)]
pub struct FileEdit {
    pub path: PathBuf,
    /// Whether a missing entry is created (`--file`) or the file is only
    /// bumped where it already names the image (`--dir`). Re-applying the bump
    /// on a fresh copy of the file after a push race uses the same mode.
    pub missing: Missing,
    pub original: String,
    pub updated: String,
    pub changes: Vec<ImageChange>,
}

/// A file to bump and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub missing: Missing,
}

/// `--file` paths (entries created when missing) plus every kustomization
/// under each `--dir` that names one of the images. Each file appears once.
pub fn targets(
    files: &[PathBuf],
    dirs: &[PathBuf],
    specs: &[ImageSpec],
) -> Result<Vec<Target>, FileError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for path in files {
        let key = fs::canonicalize(path)
            .map_err(|e| FileError::other(path, format!("cannot open: {e}")))?;
        if seen.insert(key) {
            out.push(Target {
                path: path.clone(),
                missing: Missing::Create,
            });
        }
    }
    let mut referenced = BTreeSet::new();
    for dir in dirs {
        for path in find_kustomizations(dir)? {
            let text = read_text(&path)?;
            let images = editor::read_images(&text).map_err(|source| FileError::Edit {
                path: path.clone(),
                source,
            })?;
            let hits: Vec<&str> = specs
                .iter()
                .map(|s| s.name.as_str())
                .filter(|n| images.iter().any(|i| i.name == *n))
                .collect();
            if hits.is_empty() {
                continue;
            }
            referenced.extend(hits.into_iter().map(String::from));
            let key =
                fs::canonicalize(&path).map_err(|e| FileError::other(&path, e.to_string()))?;
            if seen.insert(key) {
                out.push(Target {
                    path,
                    missing: Missing::Skip,
                });
            }
        }
    }
    // With only --dir, a name that no file uses is almost always a typo:
    // say so rather than succeed doing nothing.
    if files.is_empty()
        && let Some(spec) = specs.iter().find(|s| !referenced.contains(&s.name))
    {
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(FileError::other(
            Path::new(&dirs.join(", ")),
            format!(
                "no kustomization here has an images entry named {:?}",
                spec.name
            ),
        ));
    }
    Ok(out)
}

fn find_kustomizations(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    if !dir.is_dir() {
        return Err(FileError::other(dir, "not a directory"));
    }
    let mut found = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        // Skip .git and other hidden directories, but not the root itself.
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry =
            entry.map_err(|e| FileError::other(dir, format!("cannot read directory: {e}")))?;
        let name = entry.file_name().to_string_lossy();
        if entry.file_type().is_file() && KUSTOMIZATION_NAMES.contains(&name.as_ref()) {
            found.push(entry.into_path());
        }
    }
    Ok(found)
}

/// Reads a file as UTF-8; invalid bytes are reported with their position.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    let bytes = fs::read(path).map_err(|e| FileError::other(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        FileError::Edit {
            path: path.to_path_buf(),
            source: EditError {
                line,
                col,
                message: "the file is not valid UTF-8".into(),
            },
        }
    })
}

/// Plans the bump of `text` (the content of `target.path`).
pub fn edit_text(
    target: &Target,
    text: String,
    specs: &[ImageSpec],
) -> Result<FileEdit, FileError> {
    let (updated, changes) =
        editor::set_images(&text, specs, target.missing).map_err(|source| FileError::Edit {
            path: target.path.clone(),
            source,
        })?;
    Ok(FileEdit {
        path: target.path.clone(),
        missing: target.missing,
        original: text,
        updated,
        changes,
    })
}

impl FileEdit {
    /// The same bump applied to `text`, a fresh copy of this file (the
    /// branch moved under us), in the same [`Missing`] mode.
    pub fn reapply(&self, text: String, specs: &[ImageSpec]) -> Result<FileEdit, FileError> {
        let target = Target {
            path: self.path.clone(),
            missing: self.missing,
        };
        edit_text(&target, text, specs)
    }
}

/// Plans the bump of every target; returns only the files that change.
pub fn plan(targets: &[Target], specs: &[ImageSpec]) -> Result<Vec<FileEdit>, FileError> {
    let mut edits = Vec::new();
    for target in targets {
        let edit = edit_text(target, read_text(&target.path)?, specs)?;
        if !edit.changes.is_empty() {
            edits.push(edit);
        }
    }
    Ok(edits)
}

/// Replaces `path` with `content` atomically: a temporary file in the same
/// directory, flushed, given the original's permissions, then renamed over
/// it. A symlink is followed so the link itself is kept.
pub fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".gantry-")
        .tempfile_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = fs::metadata(&target) {
        fs::set_permissions(tmp.path(), meta.permissions())?;
    }
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_keeps_permissions_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.yaml");
        fs::write(&real, "a").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("kustomization.yaml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomically(&link, b"b").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).unwrap(), "b");
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        assert_eq!(leftovers.len(), 2, "no temporary file is left behind");
    }

    #[test]
    fn invalid_utf8_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        fs::write(&path, b"images:\n- name: a\xff\n").unwrap();
        let err = read_text(&path).unwrap_err();
        assert_eq!(err.position(), Some((2, 10)));
        assert!(
            err.to_string()
                .ends_with("k.yaml:2:10: the file is not valid UTF-8"),
            "{err}"
        );
    }
}
