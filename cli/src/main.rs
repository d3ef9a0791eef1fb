use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use gantry::bump::FileError;
use gantry::commands;
use gantry::git::GitError;
use gantry::image_ref::ImageSpec;
use rollout_core::ops::{Op, State};
use rollout_core::types::AnalysisPhase;

/// GitOps delivery: build and push images, bump kustomizations, commit and push them race-safely.
#[derive(Parser)]
#[command(name = "gantry", version, about, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GANTRY_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Set images in kustomization files, optionally commit and push.
    ///
    /// SPEC takes the forms of `kustomize edit set image`: name=newName:tag,
    /// name=newName@digest, name=newName:tag@digest, name=newName, name:tag,
    /// name:tag@digest, name@digest; `*` keeps a field's existing value.
    /// Only the bytes that must change are changed.
    Bump(BumpArgs),

    /// Copy one environment's images (newName, newTag, digest) to another.
    ///
    /// `gantry promote --from overlays/staging --to overlays/prod` makes
    /// prod's images entries match staging's exactly, editing only the bytes
    /// that must change, and prints each image's before → after. Delivered
    /// like a bump: written, committed, pushed, or proposed with --pr.
    Promote(PromoteArgs),

    /// Build images and push them to ECR or any OCI registry.
    #[command(subcommand)]
    Image(ImageCommand),

    /// Try AnalysisTemplates against Prometheus.
    #[command(subcommand)]
    Analysis(AnalysisCommand),

    /// Work with gantry.dev Rollouts.
    #[command(subcommand)]
    Rollout(RolloutCommand),
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// Print the timeline a Rollout will follow, without a cluster.
    ///
    /// Validates the Rollout and the AnalysisTemplates it references exactly
    /// as the controller does, then runs the controller's decision on a
    /// simulated cluster: each step with the traffic split and canary pods
    /// after it, pauses, analysis gates with their queries and limits, the
    /// minimum duration, and the worst case from a failing gate's start to
    /// all traffic back on stable. Reads rendered streams too:
    /// `kubectl kustomize overlays/prod | gantry rollout plan -f -`.
    Plan(RolloutPlanArgs),

    /// List Rollouts with phase, step, canary weight and readiness.
    List {
        /// The namespace (default: the kubeconfig context's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(long, short = 'A')]
        all_namespaces: bool,
    },

    /// Print where a Rollout is; with --watch, follow it until it settles.
    ///
    /// Exit status: 0 Healthy, 2 Degraded (aborted or invalid), 3 still in
    /// progress (without --watch, or when --timeout passed), 1 error.
    Status {
        #[command(flatten)]
        target: RolloutTarget,
        /// Follow every change until Healthy or Degraded.
        #[arg(long, short = 'w')]
        watch: bool,
        /// With --watch: give up after this long (e.g. 10m, 90s).
        #[arg(long, value_parser = parse_timeout, requires = "watch")]
        timeout: Option<std::time::Duration>,
    },

    /// Show a Rollout: steps, traffic, ReplicaSets, analysis, events.
    ///
    /// With --watch, shown again at every change until the Rollout is
    /// Healthy or Degraded: redrawn in place on a terminal, appended in a
    /// CI log.
    Get {
        #[command(flatten)]
        target: RolloutTarget,
        #[arg(long, short = 'w')]
        watch: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },

    /// End the current pause (`--full`: skip every remaining step).
    Promote {
        #[command(flatten)]
        target: RolloutTarget,
        /// Skip the remaining steps and analyses: go to 100% now.
        #[arg(long)]
        full: bool,
    },

    /// Send all traffic back to stable now and stop the canary.
    Abort(RolloutTarget),

    /// Start an aborted canary again from its first step.
    Retry(RolloutTarget),

    /// Hold the Rollout where it is (spec.paused).
    Pause(RolloutTarget),

    /// Undo `pause`.
    Resume(RolloutTarget),

    /// Restart every pod, one at a time, each only while all others are
    /// available (sets spec.restartAt to now).
    Restart(RolloutTarget),
}

#[derive(Args)]
struct RolloutTarget {
    /// The Rollout.
    name: String,

    /// Its namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

#[derive(Args)]
struct RolloutPlanArgs {
    /// YAML with the Rollout (and any AnalysisTemplates); `-` for stdin.
    #[arg(long, short = 'f', value_name = "FILE", required = true)]
    file: Vec<PathBuf>,

    /// Also read AnalysisTemplates from every YAML file under DIR.
    #[arg(long, value_name = "DIR")]
    analysis_templates: Option<PathBuf>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum AnalysisCommand {
    /// Measure a template's metrics once and print each query, value and verdict.
    ///
    /// Arguments are substituted and conditions judged exactly as the
    /// rollout controller does. Exit status: 0 Successful, 2 Failed,
    /// 3 Inconclusive, 1 for an error (bad template, Prometheus unreachable).
    Run(AnalysisRunArgs),
}

#[derive(Args)]
struct AnalysisRunArgs {
    /// The AnalysisTemplate YAML.
    #[arg(long, short = 'f', value_name = "FILE")]
    file: PathBuf,

    /// A template argument (repeatable); needed for args without a default
    /// and for Secret-backed ones.
    #[arg(long = "arg", short = 'a', value_name = "NAME=VALUE", value_parser = parse_key_value)]
    args: Vec<(String, String)>,

    /// Query this Prometheus instead of the template's address (e.g. a port-forward).
    #[arg(long, value_name = "URL", env = "GANTRY_PROMETHEUS")]
    prometheus: Option<String>,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Push an image from an OCI layout or archive.
    ///
    /// Blobs the registry already has are skipped; missing ones are uploaded
    /// concurrently, streamed from disk; the manifest goes last. Prints the
    /// pushed REPO@DIGEST.
    Push(PushArgs),

    /// Build an image with docker buildx or buildah, optionally push it.
    ///
    /// With --push, a build whose inputs (context after .dockerignore,
    /// Dockerfile, build args, platforms, target) match an image already in
    /// the registry is not built again: the new tags are added to that image.
    Build(BuildArgs),
}

#[derive(Args)]
struct PushArgs {
    /// oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    #[arg(long, value_name = "SOURCE", value_parser = parse_source)]
    from: gantry::oci_layout::Source,

    #[command(flatten)]
    target: TargetArgs,

    /// A tag to push (repeatable).
    #[arg(long = "tag", short = 't', value_name = "TAG", required = true)]
    tags: Vec<String>,
}

#[derive(Args)]
struct TargetArgs {
    /// The repository: an ECR name (`team/app`) or URI, or HOST/PATH of any registry.
    #[arg(long, value_name = "REPO")]
    to: Option<String>,

    /// Talk plain HTTP to the registry (a local test registry).
    #[arg(long)]
    insecure: bool,

    /// Send registry traffic to this URL instead of the repository's host.
    /// The AWS API endpoint is set the AWS way (AWS_ENDPOINT_URL_ECR).
    #[arg(long, value_name = "URL", env = "GANTRY_REGISTRY_ENDPOINT")]
    registry_endpoint: Option<reqwest::Url>,

    /// Create the ECR repository if missing, and bring its settings to these.
    #[arg(long)]
    create_repo: bool,

    /// With --create-repo: tags cannot be overwritten.
    #[arg(long, requires = "create_repo")]
    immutable_tags: bool,

    /// With --create-repo: scan images on push.
    #[arg(long, requires = "create_repo")]
    scan_on_push: bool,

    /// With --create-repo: a lifecycle policy JSON file to apply.
    #[arg(long, value_name = "FILE", requires = "create_repo")]
    lifecycle_policy: Option<PathBuf>,

    /// How many times to retry a registry request that failed transiently
    /// (connection error, 408, 429, 5xx), with jittered exponential backoff.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(0..=100))]
    retries: u16,

    /// How many blobs to upload at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

#[derive(Args)]
struct BuildArgs {
    /// The build context.
    #[arg(default_value = ".")]
    context: PathBuf,

    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(long, short = 'f', value_name = "PATH")]
    file: Option<PathBuf>,

    /// A build argument (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    build_args: Vec<(String, String)>,

    /// Target platform(s), e.g. linux/amd64,linux/arm64.
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
    platforms: Vec<String>,

    /// The Dockerfile stage to build.
    #[arg(long)]
    target: Option<String>,

    /// The builder (default: docker buildx if it works, else buildah).
    #[arg(long, value_enum)]
    builder: Option<gantry::image_build::Builder>,

    /// A tag to push besides those from git (repeatable).
    #[arg(long = "tag", short = 't', value_name = "TAG")]
    tags: Vec<String>,

    /// Do not tag with the commit SHA, short SHA, branch and semver tag.
    #[arg(long)]
    no_git_tags: bool,

    /// Also keep the OCI archive here.
    #[arg(long, value_name = "FILE", required_unless_present = "push")]
    output: Option<PathBuf>,

    /// Push the image (to --to).
    #[arg(long, requires = "to")]
    push: bool,

    /// Build even when the registry has an image from identical inputs.
    #[arg(long, requires = "push")]
    no_reuse: bool,

    #[command(flatten)]
    target_args: TargetArgs,
}

#[derive(Args)]
struct BumpArgs {
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

#[derive(Args)]
struct PromoteArgs {
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

/// What happens to the edited files: written, committed, pushed, committed
/// through the GitHub API, or proposed as a pull request.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("commits").args(["commit", "pr"]).multiple(true)))]
struct DeliveryArgs {
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
    #[arg(long, value_name = "TEMPLATE", default_value = gantry::pull_request::DEFAULT_BRANCH, requires = "pr")]
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
    detailed_exitcode: bool,
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
    fn options(
        self,
        files: Vec<PathBuf>,
        dirs: Vec<PathBuf>,
        images: Vec<ImageSpec>,
        title: Option<String>,
    ) -> commands::bump::Options {
        use commands::bump::{Delivery, Options};
        use commands::github::{ApiOptions, GitHubOptions, MergeMethod, PrOptions};
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
            files,
            dirs,
            images,
            delivery,
            message: self.message,
            title,
            author: (self.author_name, self.author_email),
            committer: (self.committer_name, self.committer_email),
            echo: true,
        }
    }
}

fn parse_source(s: &str) -> Result<gantry::oci_layout::Source, String> {
    gantry::oci_layout::Source::parse(s).map_err(|e| e.to_string())
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

fn parse_spec(s: &str) -> Result<ImageSpec, String> {
    ImageSpec::parse(s).map_err(|e| e.reason)
}

fn main() -> ExitCode {
    let cli = parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Bump(args) => {
            let detailed = args.delivery.detailed_exitcode;
            let opts = args
                .delivery
                .options(args.files, args.dirs, args.images, None);
            changed_exit(commands::bump::run(&opts), detailed)
        }
        Command::Promote(args) => {
            let detailed = args.delivery.detailed_exitcode;
            let opts = commands::promote::Options {
                from: args.from,
                to: args.to,
                images: args.images,
                bump: args
                    .delivery
                    .options(Vec::new(), Vec::new(), Vec::new(), None),
            };
            changed_exit(commands::promote::run(opts), detailed)
        }
        Command::Image(ImageCommand::Push(args)) => {
            if args.target.to.is_none() {
                Cli::command()
                    .error(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "gantry image push needs --to <REPO>",
                    )
                    .exit();
            }
            let opts = commands::image::PushOptions {
                from: args.from,
                target: args.target.into_target(),
                tags: args.tags,
            };
            commands::image::push(opts).map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
        }
        Command::Analysis(AnalysisCommand::Run(args)) => {
            let opts = commands::analysis::Options {
                file: args.file,
                args: args.args,
                prometheus: args.prometheus,
            };
            match commands::analysis::run(&opts) {
                Ok(AnalysisPhase::Successful) => ExitCode::SUCCESS,
                Ok(AnalysisPhase::Failed) => ExitCode::from(2),
                Ok(AnalysisPhase::Inconclusive) => ExitCode::from(3),
                Ok(_) => ExitCode::FAILURE,
                Err(e) => fail(&e),
            }
        }
        Command::Rollout(RolloutCommand::Plan(args)) => {
            let opts = commands::rollout::PlanOptions {
                files: args.file,
                templates_dir: args.analysis_templates,
                json: args.output == Output::Json,
            };
            commands::rollout::plan_command(&opts).map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
        }
        Command::Rollout(RolloutCommand::Promote { target, full }) => {
            rollout_op(target, Op::Promote { full })
        }
        Command::Rollout(RolloutCommand::List {
            namespace,
            all_namespaces,
        }) => commands::rollout::list_command(namespace, all_namespaces)
            .map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS),
        Command::Rollout(RolloutCommand::Status {
            target,
            watch,
            timeout,
        }) => {
            match commands::rollout::status_command(target.namespace, &target.name, watch, timeout)
            {
                Ok(State::Healthy) => ExitCode::SUCCESS,
                Ok(State::Degraded) => ExitCode::from(2),
                Ok(State::InProgress) => ExitCode::from(3),
                Err(e) => fail(&e),
            }
        }
        Command::Rollout(RolloutCommand::Get {
            target,
            watch,
            output,
        }) => commands::rollout::get_command(
            target.namespace,
            &target.name,
            watch,
            output == Output::Json,
        )
        .map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS),
        Command::Rollout(RolloutCommand::Abort(target)) => rollout_op(target, Op::Abort),
        Command::Rollout(RolloutCommand::Retry(target)) => rollout_op(target, Op::Retry),
        Command::Rollout(RolloutCommand::Pause(target)) => rollout_op(target, Op::Pause),
        Command::Rollout(RolloutCommand::Resume(target)) => rollout_op(target, Op::Resume),
        Command::Rollout(RolloutCommand::Restart(target)) => rollout_op(
            target,
            Op::Restart {
                at: jiff::Timestamp::now(),
            },
        ),
        Command::Image(ImageCommand::Build(args)) => {
            let opts = commands::image::BuildOptions {
                context: args.context,
                dockerfile: args.file,
                build_args: args.build_args,
                platforms: args.platforms,
                target: args.target,
                builder: args.builder,
                tags: args.tags,
                git_tags: !args.no_git_tags,
                output: args.output,
                push: args.push.then(|| args.target_args.into_target()),
                reuse: !args.no_reuse,
            };
            commands::image::build(opts).map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
        }
    }
}

impl TargetArgs {
    fn into_target(self) -> commands::image::Target {
        commands::image::Target {
            to: self.to.unwrap_or_default(),
            insecure: self.insecure,
            registry_endpoint: self.registry_endpoint,
            create_repo: self.create_repo.then_some(gantry::ecr::RepoSettings {
                immutable_tags: self.immutable_tags,
                scan_on_push: self.scan_on_push,
                lifecycle_policy: self.lifecycle_policy,
            }),
            jobs: self.jobs.into(),
            retries: self.retries.into(),
        }
    }
}

/// Prints the error chain; in GitHub Actions also as an annotation on the file.
/// The command line; installed as `kubectl-gantry` (a kubectl plugin, run
/// as `kubectl gantry …`), help and errors say so.
fn parse() -> Cli {
    let invoked = std::env::args_os().next().unwrap_or_default();
    let plugin = std::path::Path::new(&invoked)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("kubectl-gantry"));
    let mut command = Cli::command();
    if plugin {
        command = command.bin_name("kubectl gantry");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `90s`, `10m`, `1h`, or plain seconds.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    rollout_core::validate::parse_duration(
        &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s.to_string()),
    )
}

fn rollout_op(target: RolloutTarget, op: Op) -> ExitCode {
    commands::rollout::act_command(target.namespace, &target.name, op)
        .map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
}

/// `--detailed-exitcode`: 2 when something changed.
fn changed_exit(result: anyhow::Result<commands::bump::Summary>, detailed: bool) -> ExitCode {
    match result {
        Ok(s) if detailed && s.changed => ExitCode::from(2),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    if gantry::github::in_actions() {
        let file_error = err.chain().find_map(|e| {
            e.downcast_ref::<FileError>()
                .or_else(|| match e.downcast_ref::<GitError>() {
                    Some(GitError::File(f)) => Some(f),
                    _ => None,
                })
        });
        let annotation = match file_error {
            Some(f) => {
                gantry::github::error_annotation(&format!("{err:#}"), Some(f.path()), f.position())
            }
            None => gantry::github::error_annotation(&format!("{err:#}"), None, None),
        };
        println!("{annotation}");
    }
    ExitCode::FAILURE
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,gantry=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.without_time().with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
