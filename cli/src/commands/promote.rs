//! `gantry promote`: one environment's image set into another, delivered
//! like a bump.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

use super::bump::{self, Summary};
use crate::bump::{FileError, KUSTOMIZATION_NAMES, Target, read_text};
use crate::image_ref::ImageEntry;
use crate::kustomization::{self, Missing};
use crate::promote;

pub struct Options {
    pub from: PathBuf,
    pub to: PathBuf,
    pub images: Vec<String>,
    pub bump: bump::Options,
}

pub fn run(mut opts: Options) -> Result<Summary> {
    let (from, from_entries) = read(&opts.from)?;
    let (to, to_entries) = read(&opts.to)?;
    let (specs, rows) = promote::promotion(&from_entries, &to_entries, &opts.images)
        .map_err(|e| anyhow!("{}: {e}", from.display()))?;
    let (from_env, to_env) = (env_name(&from), env_name(&to));
    print!("{}", promote::table(&rows, &to_env));
    if !rows.iter().any(promote::Row::changes) {
        println!("nothing to promote: {to_env} already runs {from_env}'s images");
    }
    opts.bump.title = Some(promote::title(&from_env, &to_env, &rows));
    opts.bump.echo = false;
    let target = Target {
        path: to,
        missing: Missing::Create,
    };
    bump::deliver(&[target], &specs, &opts.bump)
}

/// The kustomization at `path` (a file, or the directory holding one) and
/// its images entries.
fn read(path: &Path) -> Result<(PathBuf, Vec<ImageEntry>), FileError> {
    let file = if path.is_dir() {
        KUSTOMIZATION_NAMES
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| FileError::Other {
                path: path.to_path_buf(),
                message: format!("no {} here", KUSTOMIZATION_NAMES.join(" or ")),
            })?
    } else {
        path.to_path_buf()
    };
    let text = read_text(&file)?;
    let entries = kustomization::read_images(&text).map_err(|source| FileError::Edit {
        path: file.clone(),
        source,
    })?;
    Ok((file, entries))
}

/// What people call the environment: the kustomization's directory name.
fn env_name(file: &Path) -> String {
    file.parent().and_then(Path::file_name).map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
