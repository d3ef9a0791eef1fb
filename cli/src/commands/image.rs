//! `gantry image push` and `gantry image build`: the arguments, the build →
//! reuse-or-push sequence, and what is printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use indicatif::HumanBytes;

use crate::github::actions;
use crate::oci::build::{self, Builder};
use crate::oci::build_key::{self, Inputs};
use crate::oci::destination::{self, Target};
use crate::oci::ecr::RepoSettings;
use crate::oci::layout::{Image, Layout, Source};
use crate::oci::push::{self, Destination, Progress, PushReport};
use crate::oci::reference::check_tag;

/// Build images and push them to ECR or any OCI registry.
#[derive(Subcommand)]
pub enum Command {
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
#[command(mut_arg("to", |a| a.required(true)))]
pub struct PushArgs {
    /// oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    #[arg(long, value_name = "SOURCE", value_parser = parse_source)]
    from: Source,

    #[command(flatten)]
    target: TargetArgs,

    /// A tag to push (repeatable).
    #[arg(long = "tag", short = 't', value_name = "TAG", required = true)]
    tags: Vec<String>,
}

/// Where to push; shared by push and build.
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
pub struct BuildArgs {
    /// The build context.
    #[arg(default_value = ".")]
    context: PathBuf,

    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(long, short = 'f', value_name = "PATH")]
    file: Option<PathBuf>,

    /// A build argument (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    build_args: Vec<(String, String)>,

    /// Target platform(s), e.g. linux/amd64,linux/arm64.
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
    platforms: Vec<String>,

    /// The Dockerfile stage to build.
    #[arg(long)]
    target: Option<String>,

    /// The builder (default: docker buildx if it works, else buildah).
    #[arg(long, value_enum)]
    builder: Option<Builder>,

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

pub fn exec(command: Command) -> Result<ExitCode> {
    match command {
        Command::Push(args) => push_image(args)?,
        Command::Build(args) => build_image(args)?,
    }
    Ok(ExitCode::SUCCESS)
}

impl TargetArgs {
    fn into_target(self) -> Target {
        Target {
            to: self.to.unwrap_or_default(),
            insecure: self.insecure,
            registry_endpoint: self.registry_endpoint,
            create_repo: self.create_repo.then_some(RepoSettings {
                immutable_tags: self.immutable_tags,
                scan_on_push: self.scan_on_push,
                lifecycle_policy: self.lifecycle_policy,
            }),
            jobs: self.jobs.into(),
            retries: self.retries.into(),
        }
    }
}

fn parse_source(s: &str) -> Result<Source, String> {
    Source::parse(s).map_err(|e| e.to_string())
}

fn push_image(args: PushArgs) -> Result<()> {
    for tag in &args.tags {
        check_tag(tag).map_err(anyhow::Error::msg)?;
    }
    let target = args.target.into_target();
    crate::runtime()?.block_on(async {
        let (layout, image) = open_image(&args.from)?;
        let dest = destination::resolve(&target).await?;
        let report = push::push(
            &dest,
            &layout,
            &image,
            &args.tags,
            target.jobs,
            &Progress::auto(),
        )
        .await
        .with_context(|| format!("cannot push {} to {}", args.from, target.to))?;
        announce(&dest, &report, false)
    })
}

fn build_image(opts: BuildArgs) -> Result<()> {
    let push_to = opts.push.then(|| opts.target_args.into_target());
    let dockerfile = opts
        .file
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    if !dockerfile.is_file() {
        bail!("{}: no such Dockerfile", dockerfile.display());
    }
    let key_tag = build_key::key_tag(&Inputs {
        context: &opts.context,
        dockerfile: &dockerfile,
        build_args: &opts.build_args,
        platforms: &opts.platforms,
        target: opts.target.as_deref(),
    })?;
    let source = build::source(&opts.context);
    let mut tags = opts.tags.clone();
    if !opts.no_git_tags {
        tags.extend(source.tags.iter().cloned());
    }
    for tag in &tags {
        check_tag(tag).map_err(anyhow::Error::msg)?;
    }
    tags.push(key_tag.clone());
    dedup(&mut tags);

    crate::runtime()?.block_on(async {
        let dest = match &push_to {
            Some(target) => Some(destination::resolve(target).await?),
            None => None,
        };
        if let Some(dest) = dest.as_ref().filter(|_| !opts.no_reuse)
            && let Some(existing) = push::find(dest, &key_tag).await?
        {
            let moved = push::retag(dest, &existing, &tags).await?;
            eprintln!(
                "reused {} — an image built from identical inputs ({key_tag}); nothing was built",
                dest.pinned(&existing.digest)
            );
            let report = PushReport {
                digest: existing.digest,
                tags: moved,
                ..PushReport::default()
            };
            return announce(dest, &report, true);
        }

        let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
        let output = opts
            .output
            .clone()
            .unwrap_or_else(|| scratch.path().join("image.tar"));
        let builder = Builder::pick(opts.builder)?;
        let spec = build::Spec {
            context: opts.context.clone(),
            dockerfile,
            build_args: opts.build_args.clone(),
            platforms: opts.platforms.clone(),
            target: opts.target.clone(),
            labels: build::labels(&source),
            output: output.clone(),
            name: key_tag.clone(),
        };
        tokio::task::block_in_place(|| build::build(builder, &spec))?;
        let from = Source {
            path: output.clone(),
            archive: true,
            tag: Some(key_tag.clone()),
        };
        let Some(dest) = dest else {
            eprintln!("built {from}");
            actions::set_outputs(&[("archive", output.display().to_string())])
                .context("cannot write GitHub outputs")?;
            return Ok(());
        };
        let (layout, image) = open_image(&from)?;
        let jobs = push_to.as_ref().map_or(4, |t| t.jobs);
        let report = push::push(&dest, &layout, &image, &tags, jobs, &Progress::auto())
            .await
            .with_context(|| {
                format!(
                    "cannot push the built image to {}",
                    dest.client.repository()
                )
            })?;
        announce(&dest, &report, false)
    })
}

/// The image a source names, checked for what can be checked without a registry.
fn open_image(from: &Source) -> Result<(Layout, Image)> {
    let layout = Layout::open(from).with_context(|| format!("cannot read {from}"))?;
    let image = layout.image(&layout.select(from.tag.as_deref())?)?;
    Ok((layout, image))
}

fn dedup(tags: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
}

/// Prints the pinned reference on stdout (for scripts), a summary on stderr,
/// and the step outputs in GitHub Actions.
fn announce(dest: &Destination, report: &PushReport, reused: bool) -> Result<()> {
    let image = dest.pinned(&report.digest);
    if report.blobs_uploaded + report.blobs_present > 0 {
        eprintln!(
            "pushed {} blob(s), {}; {} already in the registry",
            report.blobs_uploaded,
            HumanBytes(report.bytes_uploaded),
            report.blobs_present
        );
    } else if !reused {
        eprintln!("the registry already has this image under every tag; nothing to push");
    }
    for (tag, moved) in &report.tags {
        let state = if *moved { "set" } else { "already there" };
        eprintln!("  {} ({state})", dest.reference(tag));
    }
    println!("{image}");
    let tags: Vec<String> = report.tags.iter().map(|(t, _)| dest.reference(t)).collect();
    actions::set_outputs(&[
        ("digest", report.digest.clone()),
        ("image", image),
        ("tags", tags.join("\n")),
        ("reused", reused.to_string()),
    ])
    .context("cannot write GitHub outputs")
}
