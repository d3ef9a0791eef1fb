//! The parsers strangers' input reaches in `gantry bump`: `image_ref` (image
//! references, the `-i` SPEC forms and kustomization entries) and `editor`
//! (a kustomization's `images:` list, read and edited so that only the
//! bytes that must change do). No I/O; fuzzed in `fuzz/`.

pub mod editor;
pub mod image_ref;
