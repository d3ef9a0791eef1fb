//! kustomization.yaml `images:` entries with kustomize's semantics:
//! `image_ref` (the SPEC forms and entries), `editor` (changes only the
//! bytes that must change), `bump` (which files, the plan, atomic writes),
//! `promotion` (one environment's images into another), `report` (commit
//! messages, printed changes, job summaries). Imports nothing from the rest
//! of the CLI.

pub mod bump;
pub mod editor;
pub mod image_ref;
pub mod promotion;
pub mod report;
