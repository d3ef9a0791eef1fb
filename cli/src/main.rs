use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gantry::bump::FileError;
use gantry::commands;
use gantry::git::GitError;
use gantry::image_ref::ImageSpec;

/// GitOps delivery: bump kustomizations, commit and push them race-safely.
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

    /// Commit the changed files (in the repository that contains them).
    #[arg(long)]
    commit: bool,

    /// Commit message template; {title}, {changes} and {images} are filled in.
    #[arg(long, short = 'm', requires = "commit")]
    message: Option<String>,

    #[arg(long, env = "GIT_AUTHOR_NAME", requires = "commit")]
    author_name: Option<String>,
    #[arg(long, env = "GIT_AUTHOR_EMAIL", requires = "commit")]
    author_email: Option<String>,
    /// Defaults to the author.
    #[arg(long, env = "GIT_COMMITTER_NAME", requires = "commit")]
    committer_name: Option<String>,
    #[arg(long, env = "GIT_COMMITTER_EMAIL", requires = "commit")]
    committer_email: Option<String>,

    /// Push the commit. When another pipeline pushed first, the same bump is
    /// re-applied on the new remote tip and pushed again.
    #[arg(long, requires = "commit")]
    push: bool,

    /// The remote to push to.
    #[arg(long, default_value = "origin", requires = "push")]
    remote: String,

    /// The branch to push to (default: the current branch).
    #[arg(long, requires = "push")]
    branch: Option<String>,

    /// How many times to try the push before giving up.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000), requires = "push")]
    max_attempts: u16,

    /// Exit 0 when nothing changed and 2 when something did (as `terraform plan`).
    #[arg(long)]
    detailed_exitcode: bool,
}

fn parse_spec(s: &str) -> Result<ImageSpec, String> {
    ImageSpec::parse(s).map_err(|e| e.reason)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Bump(args) => {
            let detailed = args.detailed_exitcode;
            let opts = commands::bump::Options {
                files: args.files,
                dirs: args.dirs,
                images: args.images,
                commit: args.commit,
                message: args.message,
                author: (args.author_name, args.author_email),
                committer: (args.committer_name, args.committer_email),
                push: args.push.then(|| {
                    commands::bump::Options::push(
                        args.remote,
                        args.branch,
                        args.max_attempts.into(),
                    )
                }),
            };
            match commands::bump::run(&opts) {
                Ok(s) if detailed && s.changed => ExitCode::from(2),
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

/// Prints the error chain; in GitHub Actions also as an annotation on the file.
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
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.without_time().with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
