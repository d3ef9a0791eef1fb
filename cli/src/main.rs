//! The command line: parses, runs the subcommand, maps errors to exit
//! status 1 (each subcommand maps its own results).

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use gantry::commands::{Cli, LogFormat};
use gantry::git::GitError;
use gantry::github::actions;
use gantry::kustomize::bump::FileError;

fn main() -> ExitCode {
    let cli = parse();
    init_tracing(cli.log_format);
    cli.exec().unwrap_or_else(|e| fail(&e))
}

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

/// Prints the error chain; in GitHub Actions also as an annotation on the file.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    if actions::in_actions() {
        let file_error = err.chain().find_map(|e| {
            e.downcast_ref::<FileError>()
                .or_else(|| match e.downcast_ref::<GitError>() {
                    Some(GitError::File(f)) => Some(f),
                    _ => None,
                })
        });
        let annotation = match file_error {
            Some(f) => actions::error_annotation(&format!("{err:#}"), Some(f.path()), f.position()),
            None => actions::error_annotation(&format!("{err:#}"), None, None),
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
