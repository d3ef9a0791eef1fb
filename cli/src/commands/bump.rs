//! `gantry bump`: plan → write or commit → push, then report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bump::{self, FileEdit};
use crate::git::{self, CommitSettings, PushSettings};
use crate::image_ref::ImageSpec;
use crate::{github, report};

pub struct Options {
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
    pub images: Vec<ImageSpec>,
    pub commit: bool,
    pub message: Option<String>,
    pub author: (Option<String>, Option<String>),
    pub committer: (Option<String>, Option<String>),
    pub push: Option<PushSettings>,
}

pub struct Summary {
    pub changed: bool,
}

impl Options {
    pub fn push(remote: String, branch: Option<String>, max_attempts: usize) -> PushSettings {
        PushSettings {
            remote,
            branch,
            max_attempts,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

pub fn run(opts: &Options) -> Result<Summary> {
    let targets = bump::targets(&opts.files, &opts.dirs, &opts.images)?;
    let planned = bump::plan(&targets, &opts.images)?;
    if planned.is_empty() {
        println!("no change: every image is already set as asked");
        finish(&[], None, "Nothing to change.")?;
        return Ok(Summary { changed: false });
    }
    if !opts.commit {
        for edit in &planned {
            bump::write_atomically(&edit.path, edit.updated.as_bytes())
                .with_context(|| format!("cannot write {}", edit.path.display()))?;
        }
        print_changes(&planned);
        finish(&planned, None, "Files updated (not committed).")?;
        return Ok(Summary { changed: true });
    }

    let template = opts
        .message
        .clone()
        .unwrap_or_else(|| report::DEFAULT_MESSAGE.to_string());
    let message = |edits: &[FileEdit]| report::commit_message(&template, edits);
    let settings = CommitSettings {
        author: opts.author.clone(),
        committer: opts.committer.clone(),
        message: &message,
    };
    let outcome = match &opts.push {
        None => git::commit(&planned, &settings)?,
        Some(push) => git::commit_and_push(&planned, &opts.images, &settings, push)?,
    };
    let short = &outcome.commit.to_string()[..12];
    let footer = match (&outcome.pushed_to, outcome.edits.is_empty()) {
        (Some((remote, branch)), true) => {
            println!("no change: {remote}/{branch} already carries this bump (at {short})");
            format!("`{remote}/{branch}` already carried this bump (`{short}`).")
        }
        (Some((remote, branch)), false) => {
            print_changes(&outcome.edits);
            let tries = if outcome.attempts == 1 {
                String::new()
            } else {
                format!(" after {} attempts", outcome.attempts)
            };
            println!("pushed {short} to {remote}/{branch}{tries}");
            format!("Pushed `{short}` to `{remote}/{branch}`{tries}.")
        }
        (None, _) => {
            print_changes(&outcome.edits);
            println!("committed {short}");
            format!("Committed `{short}`.")
        }
    };
    finish(&outcome.edits, Some(&outcome.commit.to_string()), &footer)?;
    Ok(Summary {
        changed: !outcome.edits.is_empty(),
    })
}

fn print_changes(edits: &[FileEdit]) {
    for edit in edits {
        for change in &edit.changes {
            println!("{}: {}", edit.path.display(), report::describe(change));
        }
    }
}

/// Step outputs and the job summary, when running in GitHub Actions.
fn finish(edits: &[FileEdit], commit: Option<&str>, footer: &str) -> Result<()> {
    let files: Vec<String> = edits.iter().map(|e| e.path.display().to_string()).collect();
    let mut outputs = vec![
        ("changed", (!edits.is_empty()).to_string()),
        ("files", files.join("\n")),
    ];
    if let Some(commit) = commit {
        outputs.push(("commit", commit.to_string()));
    }
    github::set_outputs(&outputs).context("cannot write GITHUB_OUTPUT")?;
    github::append_summary(&report::markdown_summary(edits, footer))
        .context("cannot write GITHUB_STEP_SUMMARY")?;
    Ok(())
}
