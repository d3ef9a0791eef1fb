//! `gantry rollout …`: `plan` and `convert` read files (no cluster); `list`, `status`,
//! `get` read and watch the cluster; `dashboard` serves them live in a browser; `promote`, `abort`, `retry`, `pause`,
//! `resume`, `restart` send the patches of `rollout_core::ops`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use rollout_core::ops::{Op, State};

use crate::rollout::{cluster, convert, dashboard, plan};

/// Work with gantry.dev Rollouts.
#[derive(Subcommand)]
pub enum Command {
    /// Print the timeline a Rollout will follow, without a cluster.
    ///
    /// Validates the Rollout and the AnalysisTemplates it references exactly
    /// as the controller does, then runs the controller's decision on a
    /// simulated cluster: each step with the traffic split and canary pods
    /// after it, pauses, analysis gates with their queries and limits, the
    /// minimum duration, and the worst case from a failing gate's start to
    /// all traffic back on stable. Reads rendered streams too:
    /// `kubectl kustomize overlays/prod | gantry rollout plan -f -`.
    Plan(PlanArgs),

    /// Convert Argo Rollouts manifests to gantry.dev ones.
    ///
    /// Reads argoproj.io/v1alpha1 Rollouts, AnalysisTemplates and
    /// ClusterAnalysisTemplates (any other document passes through) and
    /// prints the stream with only what must change edited, comments and
    /// layout kept. Every field Gantry would drop or reject is listed on
    /// stderr with its path and what to do instead; then nothing is printed
    /// and the exit status is 2, unless --allow-unsupported.
    Convert(ConvertArgs),

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
        target: Target,
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
        target: Target,
        #[arg(long, short = 'w')]
        watch: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },

    /// Serve a live web page of the Rollouts, with buttons for the operations.
    ///
    /// Runs locally with your kubeconfig (nothing is installed in the
    /// cluster): every Rollout with its phase, step, traffic, images and
    /// ReplicaSets; one Rollout's steps, canary weight and analysis
    /// measurements over time, events, and promote / abort / retry / pause /
    /// resume / restart, sent with your credentials. One watch per kind is
    /// shared by every open page.
    Dashboard(DashboardArgs),

    /// End the current pause (`--full`: skip every remaining step).
    Promote {
        #[command(flatten)]
        target: Target,
        /// Skip the remaining steps and analyses: go to 100% now.
        #[arg(long)]
        full: bool,
    },

    /// Send all traffic back to stable now and stop the canary.
    Abort(Target),

    /// Start an aborted canary again from its first step.
    Retry(Target),

    /// Hold the Rollout where it is (spec.paused).
    Pause(Target),

    /// Undo `pause`.
    Resume(Target),

    /// Restart every pod, one at a time, each only while all others are
    /// available (sets spec.restartAt to now).
    Restart(Target),
}

#[derive(Args)]
pub struct Target {
    /// The Rollout.
    name: String,

    /// Its namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

#[derive(Args)]
pub struct PlanArgs {
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

#[derive(Args)]
pub struct DashboardArgs {
    /// The namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(long, short = 'A')]
    all_namespaces: bool,
    /// The port to listen on (0: any free one).
    #[arg(long, default_value_t = 3100)]
    port: u16,
    /// The address to listen on. Anything but loopback lets others act
    /// on the cluster with your credentials (a warning is printed).
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
    /// Open the page in the default browser.
    #[arg(long)]
    open: bool,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The manifests; `-` for stdin.
    #[arg(long, short = 'f', value_name = "FILE")]
    file: PathBuf,

    /// Print the converted manifests even when some fields do not carry over.
    #[arg(long)]
    allow_unsupported: bool,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn exec(command: Command) -> Result<ExitCode> {
    match command {
        Command::Plan(args) => {
            let opts = plan::Options {
                files: args.file,
                templates_dir: args.analysis_templates,
                json: args.output == Output::Json,
            };
            print!("{}", plan::plans(&opts)?);
        }
        Command::Convert(args) => return convert_files(&args),
        Command::List {
            namespace,
            all_namespaces,
        } => in_cluster(namespace, async |client, ns| {
            let scope = (!all_namespaces).then_some(ns.as_str());
            print!("{}", cluster::list(client, scope).await?);
            Ok(())
        })?,
        Command::Status {
            target,
            watch,
            timeout,
        } => {
            let state = in_cluster(target.namespace, async |client, ns| {
                let out = &mut std::io::stdout();
                cluster::status(client, &ns, &target.name, watch, timeout, out).await
            })?;
            return Ok(match state {
                State::Healthy => ExitCode::SUCCESS,
                State::Degraded => ExitCode::from(2),
                State::InProgress => ExitCode::from(3),
            });
        }
        Command::Get {
            target,
            watch,
            output,
        } => in_cluster(target.namespace, async |client, ns| {
            let out = &mut std::io::stdout();
            let json = output == Output::Json;
            cluster::get_view(client, &ns, &target.name, watch, json, out).await
        })?,
        Command::Dashboard(args) => in_cluster(args.namespace, async |client, ns| {
            let options = dashboard::Options {
                address: args.address,
                port: args.port,
                namespace: (!args.all_namespaces).then_some(ns),
                open: args.open,
            };
            dashboard::serve(client, options).await
        })?,
        Command::Promote { target, full } => act(target, Op::Promote { full })?,
        Command::Abort(target) => act(target, Op::Abort)?,
        Command::Retry(target) => act(target, Op::Retry)?,
        Command::Pause(target) => act(target, Op::Pause)?,
        Command::Resume(target) => act(target, Op::Resume)?,
        Command::Restart(target) => act(
            target,
            Op::Restart {
                at: jiff::Timestamp::now(),
            },
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

fn convert_files(args: &ConvertArgs) -> Result<ExitCode> {
    let (text, origin) = plan::read_input(&args.file)?;
    let converted = convert::convert(&text, &origin)?;
    eprint!("{}", convert::report(&converted));
    if !converted.unsupported.is_empty() && !args.allow_unsupported {
        eprintln!("nothing printed: change the manifests, or pass --allow-unsupported");
        return Ok(ExitCode::from(2));
    }
    print!("{}", converted.yaml);
    Ok(ExitCode::SUCCESS)
}

fn act(target: Target, op: Op) -> Result<()> {
    in_cluster(target.namespace, async |client, ns| {
        println!("{}", cluster::act(client, &ns, &target.name, op).await?);
        Ok(())
    })
}

/// `90s`, `10m`, `1h`, or plain seconds.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    rollout_core::validate::parse_duration(
        &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s.to_string()),
    )
}

/// Runs `work` against the cluster from the kubeconfig (`KUBECONFIG`, or
/// the in-cluster config) in `namespace`, else the context's namespace.
fn in_cluster<T>(
    namespace: Option<String>,
    work: impl AsyncFnOnce(kube::Client, String) -> Result<T>,
) -> Result<T> {
    crate::runtime()?.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("cannot connect to the cluster (is KUBECONFIG set?)")?;
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
        work(client, namespace).await
    })
}
