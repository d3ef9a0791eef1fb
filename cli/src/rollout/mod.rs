//! `gantry rollout`'s work: `plan` (files in, timeline out, no cluster),
//! `convert` (Argo Rollouts manifests in, Gantry's out),
//! `cluster` (read, watch and operate Rollouts) and `view` (how a Rollout
//! is shown). Imports only `rollout-core` and kube.

pub mod cluster;
pub mod convert;
pub mod plan;
pub mod view;
