//! The in-cluster canary controller for `gantry.dev/v1alpha1` Rollouts.
//!
//! The controller itself (CRD types, the pure canary decision, the kube
//! glue) is tracked in issue #4; this crate exists so the workspace, CI and
//! release plumbing are in place for it.

/// The API group of every Gantry custom resource.
pub const GROUP: &str = "gantry.dev";
/// The API version of the custom resources.
pub const VERSION: &str = "v1alpha1";
