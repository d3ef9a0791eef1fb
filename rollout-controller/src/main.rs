use std::net::SocketAddr;
use std::num::NonZeroU32;

use clap::{Parser, Subcommand, ValueEnum};
use kube::CustomResourceExt;
use rollout_controller::client::Limits;
use rollout_controller::run::{Settings, run};
use rollout_core::types::{AnalysisTemplate, Rollout};

/// In-cluster canary controller for gantry.dev/v1alpha1 Rollouts.
#[derive(Parser)]
#[command(name = "rollout-controller", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Only manage Rollouts in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Namespace of the leader-election Lease (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "gantry-system")]
    lease_namespace: String,

    #[arg(long, default_value = "gantry-rollout-controller")]
    lease_name: String,

    /// This replica's identity in the Lease (default: the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    #[arg(long, value_enum, default_value_t = LogFormat::Json, env = "LOG_FORMAT")]
    log_format: LogFormat,

    /// Verify on AWS (ELBv2 API) that the ALB applies the weights before a
    /// step counts as reached. auto: when AWS credentials are available.
    #[arg(long, value_enum, default_value_t = Verify::Auto, env = "VERIFY_ALB_WEIGHTS")]
    verify_alb_weights: Verify,

    /// How many Rollouts are reconciled at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,

    /// Requests per second to the Kubernetes API, on average (client-go's QPS).
    #[arg(long, default_value_t = NonZeroU32::new(40).unwrap())]
    kube_api_qps: NonZeroU32,

    /// Requests to the Kubernetes API that may go at once after a quiet spell.
    #[arg(long, default_value_t = NonZeroU32::new(80).unwrap())]
    kube_api_burst: NonZeroU32,

    /// The ConfigMap (and Secret) of notification destinations, in the
    /// controller's namespace (--lease-namespace); "" turns notifications off.
    #[arg(
        long,
        default_value = "gantry-notifications",
        env = "NOTIFICATIONS_CONFIG_MAP"
    )]
    notifications_config_map: String,

    /// Notifications pending delivery at once; beyond that new ones are
    /// dropped (and counted in /metrics).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    notifications_capacity: u16,
}

#[derive(Clone, Copy, ValueEnum)]
enum Verify {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // reqwest (Prometheus) and the AWS SDK use rustls; ring is kube's provider too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some(Command::Crd) = cli.command {
        let yaml = format!(
            "{}---\n{}",
            serde_yaml::to_string(&Rollout::crd())?,
            serde_yaml::to_string(&AnalysisTemplate::crd())?
        );
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), yaml.as_bytes());
        return Ok(());
    }
    // Off AWS the SDK's IMDS probes fail as expected, each with a
    // kilobyte-long WARN; the controller says the outcome in one line.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,aws_config::imds=error")
    });
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    let identity = cli.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let notifications = (!cli.notifications_config_map.is_empty()).then(|| {
        rollout_controller::notifications::Settings {
            namespace: cli.lease_namespace.clone(),
            name: cli.notifications_config_map,
            capacity: cli.notifications_capacity.into(),
        }
    });
    run(Settings {
        namespace: cli.namespace,
        listen: cli.listen,
        lease_namespace: cli.lease_namespace,
        lease_name: cli.lease_name,
        identity,
        verify_alb: match cli.verify_alb_weights {
            Verify::Auto => None,
            Verify::Always => Some(true),
            Verify::Never => Some(false),
        },
        concurrency: cli.concurrency,
        api_limits: Limits {
            qps: cli.kube_api_qps,
            burst: cli.kube_api_burst,
        },
        notifications,
    })
    .await
}
