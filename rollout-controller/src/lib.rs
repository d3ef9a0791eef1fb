//! The in-cluster canary controller for `gantry.dev/v1alpha1` Rollouts.
//!
//! Pure parts: `types` (the custom resource), `validate` (spec → plan),
//! `decide` (the canary decision), `status_patch` (how a status is
//! written), `ops` (what a human's promote/abort/… patches), `alb` (the
//! Ingress annotation), `hash`, `simulate` (a cluster in memory).
//! I/O parts: `reconcile` (kube glue), `leader` (Lease election), `metrics`,
//! `server` (health and metrics endpoints), `run` (wiring).

pub mod alb;
pub mod analysis;
pub mod decide;
pub mod elbv2;
pub mod hash;
pub mod leader;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod prometheus;
pub mod reconcile;
pub mod run;
pub mod server;
pub mod simulate;
pub mod status_patch;
pub mod types;
pub mod validate;

/// The API group of every Gantry custom resource.
pub const GROUP: &str = "gantry.dev";
/// The API version of the custom resources.
pub const VERSION: &str = "v1alpha1";
