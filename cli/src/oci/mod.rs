//! Images: built (`build`, with `build_key` to skip identical builds), read
//! from OCI layouts (`layout`), pushed (`push`) through a distribution-API
//! `client` that logs in with the `auth` keychains; `ecr` adds AWS ECR's
//! API (logins, repositories, retags). Imports nothing from the rest of
//! the CLI.

pub mod auth;
pub mod build;
pub mod build_key;
pub mod client;
pub mod destination;
pub mod ecr;
pub mod error;
pub mod layout;
pub mod push;
pub mod reference;
