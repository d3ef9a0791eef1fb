//! The delivery options `gantry bump` and `gantry promote` share: what
//! happens to the edited files (written, committed, pushed, committed
//! through the GitHub API, or proposed as a pull request).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::deliver::{
    ApiOptions, Delivery, GitHubOptions, MergeMethod, Options, PrOptions, Summary,
};
use crate::github::pull_request;

/// What happens to the edited files: written, committed, pushed, committed
/// through the GitHub API, or proposed as a pull request.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("commits").args(["commit", "pr"]).multiple(true)))]
pub struct DeliveryArgs {
    /// Commit the changed files (in the repository that contains them).
    #[arg(long)]
    commit: bool,

    /// Commit message template; {title}, {changes} and {images} are filled in.
    #[arg(long, short = 'm', requires = "commits")]
    message: Option<String>,

    #[arg(long, env = "GIT_AUTHOR_NAME", requires = "commits")]
    author_name: Option<String>,
    #[arg(long, env = "GIT_AUTHOR_EMAIL", requires = "commits")]
    author_email: Option<String>,
    /// Defaults to the author.
    #[arg(long, env = "GIT_COMMITTER_NAME", requires = "commits")]
    committer_name: Option<String>,
    #[arg(long, env = "GIT_COMMITTER_EMAIL", requires = "commits")]
    committer_email: Option<String>,

    /// Push the commit. When another pipeline pushed first, the same bump is
    /// re-applied on the new remote tip and pushed again.
    #[arg(long, requires = "commit", conflicts_with = "pr")]
    push: bool,

    /// How to make the commit: with git (then pushed), or with GitHub's
    /// createCommitOnBranch API, which GitHub signs ("Verified") and which
    /// needs no push. With `api`, the local checkout is only read.
    #[arg(long, value_enum, default_value_t = CommitVia::Git, requires = "commits")]
    commit_via: CommitVia,

    /// The remote to push to and fetch from.
    #[arg(long, default_value = "origin")]
    remote: String,

    /// The branch to push or commit to, or the pull request's base
    /// (default: the current branch).
    #[arg(long)]
    branch: Option<String>,

    /// How many times to try the commit when other pipelines keep winning
    /// the race, before giving up.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    max_attempts: u16,

    /// Open a pull request instead of pushing to the branch: the bump is
    /// made on the base's current tip, on a branch of its own. A re-run
    /// updates the open pull request; a newer bump of the same images closes
    /// the older pull requests it covers.
    #[arg(long)]
    pr: bool,

    /// The pull request's branch; {images}, {dirs} and {versions} are filled in.
    #[arg(long, value_name = "TEMPLATE", default_value = pull_request::DEFAULT_BRANCH, requires = "pr")]
    pr_branch: String,

    /// A label for the pull request (repeatable).
    #[arg(long = "label", value_name = "LABEL", requires = "pr")]
    labels: Vec<String>,

    /// A reviewer: a user, or ORG/TEAM (repeatable).
    #[arg(long = "reviewer", value_name = "WHO", requires = "pr")]
    reviewers: Vec<String>,

    /// Open the pull request as a draft.
    #[arg(long, requires = "pr")]
    draft: bool,

    /// Turn on GitHub's auto-merge with this method (default squash).
    #[arg(long, value_enum, value_name = "METHOD", num_args = 0..=1, default_missing_value = "squash", requires = "pr")]
    auto_merge: Option<MergeMethodArg>,

    /// GitHub's REST API root (GitHub Enterprise Server: https://HOST/api/v3).
    #[arg(long, value_name = "URL", env = "GITHUB_API_URL")]
    github_api_url: Option<String>,

    /// The repository on GitHub (default: from the remote's URL, else GITHUB_REPOSITORY).
    #[arg(long, value_name = "OWNER/REPO")]
    github_repo: Option<String>,

    /// Act as this GitHub App (its installation on the repository) instead
    /// of GITHUB_TOKEN/GH_TOKEN [env: GANTRY_GITHUB_APP_ID, ignored when empty].
    #[arg(long, value_name = "ID")]
    github_app_id: Option<u64>,

    /// The App's private key (PEM) [env: GANTRY_GITHUB_APP_KEY_FILE]; else
    /// GANTRY_GITHUB_APP_PRIVATE_KEY holds the key itself.
    #[arg(long, value_name = "FILE")]
    github_app_key: Option<PathBuf>,

    /// Exit 0 when nothing changed and 2 when something did (as `terraform plan`).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum CommitVia {
    Git,
    Api,
}

#[derive(Clone, Copy, ValueEnum)]
enum MergeMethodArg {
    Merge,
    Squash,
    Rebase,
}

impl DeliveryArgs {
    pub fn options(self) -> Options {
        let github = GitHubOptions {
            api_url: self.github_api_url,
            repo: self.github_repo,
            app_id: self.github_app_id,
            app_key: self.github_app_key,
        };
        let max_attempts = usize::from(self.max_attempts);
        let via_api = self.commit_via == CommitVia::Api;
        let delivery = if self.pr {
            Delivery::PullRequest(PrOptions {
                github,
                remote: self.remote,
                base: self.branch,
                branch_template: self.pr_branch,
                labels: self.labels,
                reviewers: self.reviewers,
                draft: self.draft,
                auto_merge: self.auto_merge.map(|m| match m {
                    MergeMethodArg::Merge => MergeMethod::Merge,
                    MergeMethodArg::Squash => MergeMethod::Squash,
                    MergeMethodArg::Rebase => MergeMethod::Rebase,
                }),
                via_api,
                max_attempts,
            })
        } else if self.commit && via_api {
            Delivery::Api(ApiOptions {
                github,
                remote: self.remote,
                branch: self.branch,
                max_attempts,
            })
        } else if self.push {
            Delivery::Push(Options::push(self.remote, self.branch, max_attempts))
        } else if self.commit {
            Delivery::Commit
        } else {
            Delivery::Write
        };
        Options {
            delivery,
            message: self.message,
            title: None,
            author: (self.author_name, self.author_email),
            committer: (self.committer_name, self.committer_email),
            echo: true,
        }
    }
}

/// `--detailed-exitcode`: 2 when something changed.
pub fn exit_code(summary: &Summary, detailed: bool) -> ExitCode {
    if detailed && summary.changed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
