//! Gantry: the GitOps delivery toolchain's CLI library.
//!
//! `main.rs` holds only the command-line tree; each concern lives in its own
//! module here, and `commands` wires them together per subcommand.

pub mod bump;
pub mod commands;
pub mod git;
pub mod github;
pub mod image_ref;
pub mod kustomization;
pub mod report;
