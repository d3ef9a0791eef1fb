//! `gantry promote`: one environment's image set into another, delivered
//! like a bump.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;

use super::delivery::{self, DeliveryArgs};
use crate::deliver;
use crate::kustomize::bump::{FileError, KUSTOMIZATION_NAMES, Target, read_text};
use crate::kustomize::editor::{self, Missing};
use crate::kustomize::image_ref::ImageEntry;
use crate::kustomize::promotion;

/// Copy one environment's images (newName, newTag, digest) to another.
///
/// `gantry promote --from overlays/staging --to overlays/prod` makes
/// prod's images entries match staging's exactly, editing only the bytes
/// that must change, and prints each image's before → after. Delivered
/// like a bump: written, committed, pushed, or proposed with --pr.
#[derive(Args)]
pub struct PromoteArgs {
    /// The environment to copy images from: a kustomization or its directory.
    #[arg(long, value_name = "PATH")]
    from: PathBuf,

    /// The environment to bring to the same images.
    #[arg(long, value_name = "PATH")]
    to: PathBuf,

    /// Promote only this image (repeatable; default: every image of --from).
    #[arg(long = "image", short = 'i', value_name = "NAME")]
    images: Vec<String>,

    #[command(flatten)]
    delivery: DeliveryArgs,
}

pub fn exec(args: PromoteArgs) -> Result<ExitCode> {
    let (from, from_entries) = read(&args.from)?;
    let (to, to_entries) = read(&args.to)?;
    let (specs, rows) = promotion::promotion(&from_entries, &to_entries, &args.images)
        .map_err(|e| anyhow!("{}: {e}", from.display()))?;
    let (from_env, to_env) = (env_name(&from), env_name(&to));
    print!("{}", promotion::table(&rows, &to_env));
    if !rows.iter().any(promotion::Row::changes) {
        println!("nothing to promote: {to_env} already runs {from_env}'s images");
    }
    let detailed = args.delivery.detailed_exitcode;
    let mut opts = args.delivery.options();
    opts.title = Some(promotion::title(&from_env, &to_env, &rows));
    opts.echo = false;
    let target = Target {
        path: to,
        missing: Missing::Create,
    };
    let summary = deliver::deliver(&[target], &specs, &opts)?;
    Ok(delivery::exit_code(&summary, detailed))
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
    let entries = editor::read_images(&text).map_err(|source| FileError::Edit {
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
