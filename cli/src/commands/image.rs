//! `gantry image push` and `gantry image build`: where an image goes, how the
//! registry login is found, and what is printed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use indicatif::HumanBytes;
use reqwest::Url;

use crate::build_key::{self, Inputs};
use crate::ecr::{Ecr, EcrHost, RepoSettings};
use crate::image_build::{self, Builder};
use crate::image_push::{self, Destination, Progress, PushReport};
use crate::oci_layout::{Image, Layout, Source};
use crate::registry::{self, Client, LoginSource, Repository};

/// Where to push, as given on the command line.
pub struct Target {
    /// An ECR repository name or URI, or `HOST/PATH` of any registry.
    pub to: String,
    /// Plain HTTP (a local test registry).
    pub insecure: bool,
    /// Send registry traffic here instead of to the repository's host.
    pub registry_endpoint: Option<Url>,
    /// Create the ECR repository (or converge its settings).
    pub create_repo: Option<RepoSettings>,
    pub jobs: usize,
    pub retries: usize,
}

pub struct PushOptions {
    pub from: Source,
    pub target: Target,
    pub tags: Vec<String>,
}

pub struct BuildOptions {
    pub context: PathBuf,
    pub dockerfile: Option<PathBuf>,
    pub build_args: Vec<(String, String)>,
    pub platforms: Vec<String>,
    pub target: Option<String>,
    pub builder: Option<Builder>,
    pub tags: Vec<String>,
    pub git_tags: bool,
    pub output: Option<PathBuf>,
    pub push: Option<Target>,
    pub reuse: bool,
}

pub fn push(opts: PushOptions) -> Result<()> {
    for tag in &opts.tags {
        registry::check_tag(tag).map_err(anyhow::Error::msg)?;
    }
    super::runtime()?.block_on(async {
        let (layout, image) = open_image(&opts.from)?;
        let dest = destination(&opts.target).await?;
        let report = image_push::push(
            &dest,
            &layout,
            &image,
            &opts.tags,
            opts.target.jobs,
            &Progress::auto(),
        )
        .await
        .with_context(|| format!("cannot push {} to {}", opts.from, opts.target.to))?;
        announce(&dest, &report, false)
    })
}

pub fn build(opts: BuildOptions) -> Result<()> {
    let dockerfile = opts
        .dockerfile
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
    let source = image_build::source(&opts.context);
    let mut tags = opts.tags.clone();
    if opts.git_tags {
        tags.extend(source.tags.iter().cloned());
    }
    for tag in &tags {
        registry::check_tag(tag).map_err(anyhow::Error::msg)?;
    }
    tags.push(key_tag.clone());
    dedup(&mut tags);

    super::runtime()?.block_on(async {
        let dest = match &opts.push {
            Some(target) => Some(destination(target).await?),
            None => None,
        };
        if let Some(dest) = dest.as_ref().filter(|_| opts.reuse)
            && let Some(existing) = image_push::find(dest, &key_tag).await?
        {
            let moved = image_push::retag(dest, &existing, &tags).await?;
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
        let spec = image_build::Spec {
            context: opts.context.clone(),
            dockerfile,
            build_args: opts.build_args.clone(),
            platforms: opts.platforms.clone(),
            target: opts.target.clone(),
            labels: labels(&source),
            output: output.clone(),
            name: key_tag.clone(),
        };
        tokio::task::block_in_place(|| image_build::build(builder, &spec))?;
        let from = Source {
            path: output.clone(),
            archive: true,
            tag: Some(key_tag.clone()),
        };
        let Some(dest) = dest else {
            eprintln!("built {from}");
            crate::github::set_outputs(&[("archive", output.display().to_string())])
                .context("cannot write GitHub outputs")?;
            return Ok(());
        };
        let (layout, image) = open_image(&from)?;
        let jobs = opts.push.as_ref().map_or(4, |t| t.jobs);
        let report = image_push::push(&dest, &layout, &image, &tags, jobs, &Progress::auto())
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

/// OCI labels from the checkout; `created` honours `SOURCE_DATE_EPOCH`.
fn labels(source: &image_build::Source) -> Vec<(String, String)> {
    let created = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let mut labels = vec![(
        "org.opencontainers.image.created".to_owned(),
        created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )];
    if let Some(url) = &source.url {
        labels.push(("org.opencontainers.image.source".to_owned(), url.clone()));
    }
    if let Some(rev) = &source.revision {
        labels.push(("org.opencontainers.image.revision".to_owned(), rev.clone()));
    }
    labels
}

fn dedup(tags: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
}

/// Resolves `--to`: an ECR repository (a bare name, or an ECR registry host)
/// gets its login and tag mutability from the ECR API; any other registry a
/// login from the environment or Docker's config.
pub async fn destination(target: &Target) -> Result<Destination> {
    let first = target.to.split('/').next().unwrap_or_default();
    let has_host = first.contains(['.', ':']) || first == "localhost";
    let (repo, ecr) = if has_host {
        let repo = Repository::parse(&target.to).map_err(anyhow::Error::msg)?;
        match EcrHost::parse(&repo.host) {
            Some(host) => (repo, Some(Arc::new(Ecr::new(Some(&host.region)).await))),
            None => (repo, None),
        }
    } else {
        let ecr = Arc::new(Ecr::new(None).await);
        let host = ecr
            .default_registry_host()
            .await
            .context("cannot find the default ECR registry (is AWS configured?)")?;
        let repo =
            Repository::parse(&format!("{host}/{}", target.to)).map_err(anyhow::Error::msg)?;
        (repo, Some(ecr))
    };
    let base = match &target.registry_endpoint {
        Some(url) => url.clone(),
        None => {
            let scheme = if target.insecure { "http" } else { "https" };
            Url::parse(&format!("{scheme}://{}", repo.host))
                .with_context(|| format!("{:?} is not a registry host", repo.host))?
        }
    };
    let (login, immutable_tags): (Arc<dyn LoginSource>, bool) = match &ecr {
        Some(ecr) => {
            let immutable = match &target.create_repo {
                Some(settings) => {
                    for done in ecr.ensure_repository(&repo.path, settings).await? {
                        eprintln!("{}: {done}", repo.path);
                    }
                    settings.immutable_tags
                }
                None => ecr.tags_immutable(&repo.path).await,
            };
            (ecr.clone(), immutable)
        }
        None => {
            if target.create_repo.is_some() {
                bail!(
                    "--create-repo works with ECR repositories only; {} is not one",
                    repo.host
                );
            }
            let login = crate::docker_config::login_for(&repo.host)?;
            (Arc::new(login), false)
        }
    };
    Ok(Destination {
        client: Client::new(base, repo, login, target.retries)?,
        ecr,
        immutable_tags,
    })
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
    crate::github::set_outputs(&[
        ("digest", report.digest.clone()),
        ("image", image),
        ("tags", tags.join("\n")),
        ("reused", reused.to_string()),
    ])
    .context("cannot write GitHub outputs")
}
