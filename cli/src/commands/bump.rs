//! `gantry bump`: set images in kustomization files, then deliver.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::delivery::{self, DeliveryArgs};
use crate::deliver;
use crate::kustomize::bump;
use crate::kustomize::image_ref::ImageSpec;

/// Set images in kustomization files, optionally commit and push.
///
/// SPEC takes the forms of `kustomize edit set image`: name=newName:tag,
/// name=newName@digest, name=newName:tag@digest, name=newName, name:tag,
/// name:tag@digest, name@digest; `*` keeps a field's existing value.
/// Only the bytes that must change are changed.
#[derive(Args)]
pub struct BumpArgs {
    /// A kustomization file to edit (its entry is created when missing).
    #[arg(
        long = "file",
        short = 'f',
        value_name = "PATH",
        required_unless_present = "dirs"
    )]
    files: Vec<PathBuf>,

    /// Bump every kustomization under DIR that has an entry for the image.
    #[arg(long = "dir", value_name = "DIR")]
    dirs: Vec<PathBuf>,

    /// The image to set.
    #[arg(long = "image", short = 'i', value_name = "SPEC", required = true, value_parser = parse_spec)]
    images: Vec<ImageSpec>,

    #[command(flatten)]
    delivery: DeliveryArgs,
}

pub fn exec(args: BumpArgs) -> Result<ExitCode> {
    let detailed = args.delivery.detailed_exitcode;
    let targets = bump::targets(&args.files, &args.dirs, &args.images)?;
    let summary = deliver::deliver(&targets, &args.images, &args.delivery.options())?;
    Ok(delivery::exit_code(&summary, detailed))
}

fn parse_spec(s: &str) -> Result<ImageSpec, String> {
    ImageSpec::parse(s).map_err(|e| e.reason)
}
