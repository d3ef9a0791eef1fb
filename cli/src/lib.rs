//! Gantry: the GitOps delivery toolchain's CLI library.
//!
//! `main.rs` holds only the command-line tree; each concern lives in its own
//! module here, and `commands` wires them together per subcommand.

pub mod api_commit;
pub mod build_key;
pub mod bump;
pub mod commands;
pub mod docker_config;
pub mod ecr;
pub mod git;
pub mod github;
pub mod github_api;
pub mod image_build;
pub mod image_push;
pub mod image_ref;
pub mod kustomization;
pub mod oci_layout;
pub mod promote;
pub mod pull_request;
pub mod registry;
pub mod report;
pub mod rollout_view;
