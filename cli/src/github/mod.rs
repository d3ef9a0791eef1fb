//! GitHub: `actions` (the runner's outputs, job summary, annotations),
//! `client` (REST and GraphQL, token or App auth), `api_commit` (commits
//! GitHub makes and signs) and `pull_request` (a bump's branch, title and
//! body). Imports `kustomize` only.

pub mod actions;
pub mod api_commit;
pub mod client;
pub mod pull_request;
