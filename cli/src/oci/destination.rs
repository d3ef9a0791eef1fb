//! Where an image goes: `--to` resolved to a registry client with the right
//! keychain (ECR's API for ECR repositories, else the environment or
//! Docker's config) and the repository's tag mutability.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use reqwest::Url;

use crate::oci::auth::{LoginSource, docker_config};
use crate::oci::client::Client;
use crate::oci::ecr::{Ecr, EcrHost, RepoSettings};
use crate::oci::push::Destination;
use crate::oci::reference::Repository;

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

/// Resolves `--to`: an ECR repository (a bare name, or an ECR registry host)
/// gets its login and tag mutability from the ECR API; any other registry a
/// login from the environment or Docker's config.
pub async fn resolve(target: &Target) -> Result<Destination> {
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
            let login = docker_config::login_for(&repo.host)?;
            (Arc::new(login), false)
        }
    };
    Ok(Destination {
        client: Client::new(base, repo, login, target.retries)?,
        ecr,
        immutable_tags,
    })
}
