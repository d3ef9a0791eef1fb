//! The pure core of Gantry's canary controller: no kube runtime, no AWS
//! SDK, no HTTP. The controller's glue (`rollout-controller`) and the CLI
//! depend on it; it depends on neither, so the compiler keeps I/O out.
//!
//! - `types`: the `Rollout` and `AnalysisTemplate` custom resources;
//!   `validate`: spec → plan; `hash`: pod template hashes and selectors.
//! - `world`: what the glue observes; `decide`: the canary decision;
//!   `status_patch`: how a decided status is written.
//! - `analysis`: templates, arguments, conditions, limits, scheduling;
//!   `alb`: the AWS Load Balancer Controller's action annotation.
//! - `notify`: which notifications a status calls for, once each, and
//!   their destinations and bodies.
//! - `ops`: what a human's promote/abort/… patches; `simulate`: a cluster
//!   in memory running the decision; `plan`: the timeline from it;
//!   `display`: how steps and durations read to people.
//! - `error_chain`: an error and its causes on one line (every crate's).

pub mod alb;
pub mod analysis;
pub mod argocd;
pub mod decide;
pub mod display;
pub mod error_chain;
pub mod hash;
pub mod notify;
pub mod ops;
pub mod plan;
pub mod simulate;
pub mod status_patch;
pub mod types;
pub mod validate;
pub mod world;

/// The API group of every Gantry custom resource.
pub const GROUP: &str = "gantry.dev";
/// The API version of the custom resources.
pub const VERSION: &str = "v1alpha1";
