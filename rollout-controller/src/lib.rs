//! The in-cluster canary controller for `gantry.dev/v1alpha1` Rollouts.
//!
//! `types` is the custom resource, `validate` turns a spec into a plan,
//! `decide` is the pure canary decision, `alb` the Ingress annotation.

pub mod alb;
pub mod decide;
pub mod hash;
pub mod types;
pub mod validate;

/// The API group of every Gantry custom resource.
pub const GROUP: &str = "gantry.dev";
/// The API version of the custom resources.
pub const VERSION: &str = "v1alpha1";
