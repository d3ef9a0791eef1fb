//! Gantry: the GitOps delivery toolchain's CLI library. One folder per
//! concern; imports point one way:
//!
//! - `commands`: each subcommand's arguments and `exec` (uses all below);
//! - `deliver`: write / commit / push / API commit / pull request, shared
//!   by bump and promote (uses `git`, `github`, `kustomize`);
//! - `git`, `github`: the repository and GitHub (use `kustomize`);
//! - `kustomize`: kustomization `images:` entries, edited byte-exactly;
//! - `oci`: images built and pushed to ECR or any registry;
//! - `rollout`: Rollouts planned, watched and operated (uses `rollout-core`).

pub mod commands;
pub mod deliver;
pub mod git;
pub mod github;
pub mod kustomize;
pub mod oci;
pub mod rollout;

/// The async runtime for commands that talk to registries, AWS, GitHub or
/// the cluster. reqwest, the AWS SDK and kube all use rustls; ring is the
/// one crypto provider.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}
