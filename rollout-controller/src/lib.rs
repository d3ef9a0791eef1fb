//! The in-cluster canary controller for `gantry.dev/v1alpha1` Rollouts: the
//! kube glue around the pure `rollout-core`. `reconcile` observes a
//! Rollout's world, asks `rollout_core::decide`, applies what it says
//! (each write conditional on what it saw, `expectations`);
//! `cache` holds the trimmed watch caches it reads, `references` which
//! Rollouts name which objects; `replica_sets` what is written to
//! ReplicaSets and their pods; `run` wires the controller, `client` (the
//! rate-limited API client), `leader` (Lease election), `telemetry`
//! (the controller's own metrics, apart from `rollout-metrics`' measurements),
//! `server` (health and metrics endpoints), `watches` (the watches kept
//! alive, and whether the caches are fresh), `events`, `notifications`
//! (destinations and background delivery); `elbv2` is the AWS client.
//! Measurements come from `rollout-metrics`, shared with the CLI, and
//! (`job` metrics) from Jobs in the cluster (`jobs`).

pub mod cache;
pub mod client;
pub mod elbv2;
pub mod events;
pub mod expectations;
pub mod jobs;
pub mod leader;
pub mod notifications;
pub mod reconcile;
pub mod references;
pub mod replica_sets;
pub mod run;
pub mod server;
pub mod telemetry;
pub mod watches;
