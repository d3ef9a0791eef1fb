//! One module per subcommand, as cargo's `commands/`: each owns its clap
//! arguments and an `exec` that does the work through the library's
//! concerns and returns the exit code. `delivery` holds the options bump and
//! promote share.

pub mod analysis;
pub mod bump;
pub mod delivery;
pub mod image;
pub mod promote;
pub mod rollout;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// GitOps delivery: build and push images, bump kustomizations, commit and push them race-safely.
#[derive(Parser)]
#[command(name = "gantry", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GANTRY_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    Bump(bump::BumpArgs),
    Promote(promote::PromoteArgs),
    #[command(subcommand)]
    Image(image::Command),
    #[command(subcommand)]
    Analysis(analysis::Command),
    #[command(subcommand)]
    Rollout(rollout::Command),
}

impl Cli {
    /// Runs the subcommand; its exit code, or the error for main to print.
    pub fn exec(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Bump(args) => bump::exec(args),
            Command::Promote(args) => promote::exec(args),
            Command::Image(command) => image::exec(command),
            Command::Analysis(command) => analysis::exec(command),
            Command::Rollout(command) => rollout::exec(command),
        }
    }
}

/// `KEY=VALUE`, for repeatable options (`--build-arg`, `--arg`).
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}
