//! How a bump reaches the repository, shared by `gantry bump` and `gantry
//! promote`: plan → deliver (write, commit, push, commit through the GitHub
//! API, or open a pull request) → report (printed, step outputs, job
//! summary). Imports `kustomize`, `git` and `github`; nothing imports it but
//! `commands`.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::git::{self, CommitSettings, PushSettings};
use crate::github::actions;
use crate::kustomize::bump::{self, FileEdit, Target};
use crate::kustomize::image_ref::ImageSpec;
use crate::kustomize::report;

mod github;

pub use github::{ApiOptions, GitHubOptions, MergeMethod, PrOptions};

pub struct Options {
    pub delivery: Delivery,
    pub message: Option<String>,
    /// Replaces the `{title}` gantry derives from the changes.
    pub title: Option<String>,
    pub author: (Option<String>, Option<String>),
    pub committer: (Option<String>, Option<String>),
    /// Print each change (promote prints its own table instead).
    pub echo: bool,
}

/// What happens to the edited files.
pub enum Delivery {
    /// Written in place.
    Write,
    /// Committed on HEAD.
    Commit,
    /// Committed and pushed, surviving races.
    Push(PushSettings),
    /// Committed on a branch through GitHub's API (signed by GitHub).
    Api(ApiOptions),
    /// Committed on a branch of their own and proposed as a pull request.
    PullRequest(PrOptions),
}

pub struct Summary {
    pub changed: bool,
}

impl Options {
    pub fn push(remote: String, branch: Option<String>, max_attempts: usize) -> PushSettings {
        PushSettings {
            remote,
            token: None,
            branch,
            max_attempts,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Plans the bump of `targets` and delivers it as `opts` says.
pub fn deliver(targets: &[Target], specs: &[ImageSpec], opts: &Options) -> Result<Summary> {
    let planned = bump::plan(targets, specs)?;
    if planned.is_empty() {
        if opts.echo {
            println!("no change: every image is already set as asked");
        }
        finish(&[], &[], "Nothing to change.")?;
        return Ok(Summary { changed: false });
    }
    let template = opts
        .message
        .clone()
        .unwrap_or_else(|| report::DEFAULT_MESSAGE.to_string());
    let message =
        |edits: &[FileEdit]| report::commit_message(&template, opts.title.as_deref(), edits);
    let settings = CommitSettings {
        author: opts.author.clone(),
        committer: opts.committer.clone(),
        message: &message,
    };
    let echo = |edits: &[FileEdit]| {
        if opts.echo {
            print_changes(edits);
        }
    };
    let delivered = match &opts.delivery {
        Delivery::Write => {
            for edit in &planned {
                bump::write_atomically(&edit.path, edit.updated.as_bytes())
                    .with_context(|| format!("cannot write {}", edit.path.display()))?;
            }
            echo(&planned);
            Delivered::new(planned, "Files updated (not committed).")
        }
        Delivery::Commit => {
            let outcome = git::commit(&planned, &settings)?;
            echo(&outcome.edits);
            let short = &outcome.commit.to_string()[..12];
            println!("committed {short}");
            Delivered::new(outcome.edits, &format!("Committed `{short}`."))
                .output("commit", outcome.commit.to_string())
        }
        Delivery::Push(push) => {
            let outcome = git::commit_and_push(&planned, specs, &settings, push)?;
            let short = &outcome.commit.to_string()[..12];
            let (remote, branch) = outcome.pushed_to.clone().unwrap_or_default();
            let footer = if outcome.edits.is_empty() {
                println!("no change: {remote}/{branch} already carries this bump (at {short})");
                format!("`{remote}/{branch}` already carried this bump (`{short}`).")
            } else {
                echo(&outcome.edits);
                let tries = after_attempts(outcome.attempts);
                println!("pushed {short} to {remote}/{branch}{tries}");
                format!("Pushed `{short}` to `{remote}/{branch}`{tries}.")
            };
            Delivered::new(outcome.edits, &footer).output("commit", outcome.commit.to_string())
        }
        Delivery::Api(api) => github::commit(&planned, specs, &settings, api, &echo)?,
        Delivery::PullRequest(pr) => github::pull_request(&planned, specs, &settings, pr, &echo)?,
    };
    finish(&delivered.edits, &delivered.outputs, &delivered.footer)?;
    Ok(Summary {
        changed: !delivered.edits.is_empty(),
    })
}

/// What a delivery did: the edits it made, step outputs beyond `changed`
/// and `files`, and the job summary's last line.
struct Delivered {
    pub edits: Vec<FileEdit>,
    pub outputs: Vec<(&'static str, String)>,
    pub footer: String,
}

impl Delivered {
    pub fn new(edits: Vec<FileEdit>, footer: &str) -> Delivered {
        Delivered {
            edits,
            outputs: Vec::new(),
            footer: footer.to_string(),
        }
    }

    pub fn output(mut self, name: &'static str, value: String) -> Delivered {
        self.outputs.push((name, value));
        self
    }
}

/// `" after N attempts"` when a race made the delivery try again, else nothing.
fn after_attempts(attempts: usize) -> String {
    match attempts {
        1 => String::new(),
        n => format!(" after {n} attempts"),
    }
}

fn print_changes(edits: &[FileEdit]) {
    for edit in edits {
        for change in &edit.changes {
            println!("{}: {}", edit.path.display(), report::describe(change));
        }
    }
}

/// Step outputs and the job summary, when running in GitHub Actions.
fn finish(edits: &[FileEdit], extra: &[(&str, String)], footer: &str) -> Result<()> {
    let files: Vec<String> = edits.iter().map(|e| e.path.display().to_string()).collect();
    let mut outputs = vec![
        ("changed", (!edits.is_empty()).to_string()),
        ("files", files.join("\n")),
    ];
    outputs.extend(extra.iter().cloned());
    actions::set_outputs(&outputs).context("cannot write GITHUB_OUTPUT")?;
    actions::append_summary(&report::markdown_summary(edits, footer))
        .context("cannot write GITHUB_STEP_SUMMARY")?;
    Ok(())
}
