//! One module per subcommand: each turns parsed arguments into work and
//! output. The argument types live in `main.rs`.

pub mod analysis;
pub mod bump;
pub mod github;
pub mod image;
pub mod promote;
pub mod rollout;

/// The async runtime for commands that talk to registries, AWS or the
/// cluster. reqwest, the AWS SDK and kube all use rustls; ring is the one
/// crypto provider.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}
