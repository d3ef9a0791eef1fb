//! `gantry rollout`'s work: `plan` (files in, timeline out, no cluster),
//! `convert` (Argo Rollouts manifests in, Gantry's out),
//! `cluster` (read, watch and operate Rollouts), `view` (how a Rollout
//! is shown) and `dashboard` (the same in a browser, live). Imports only
//! `rollout-core`, kube, and the dashboard's web crates.

pub mod cluster;
pub mod convert;
pub mod dashboard;
pub mod plan;
pub mod view;
