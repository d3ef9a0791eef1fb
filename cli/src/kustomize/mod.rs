//! kustomization.yaml `images:` entries with kustomize's semantics:
//! `image_ref` (the SPEC forms and entries) and `editor` (changes only the
//! bytes that must change), from the `gantry-kustomize` crate; `bump` (which files, the plan, atomic writes),
//! `promotion` (one environment's images into another), `report` (commit
//! messages, printed changes, job summaries). Imports nothing from the rest
//! of the CLI.

pub mod bump;
pub mod promotion;
pub mod report;

pub use gantry_kustomize::{editor, image_ref};
