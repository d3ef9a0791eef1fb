//! Registry credentials as keychains: each source answers "the login for
//! this registry", and the client asks again when the registry rejects one
//! (an ECR token expires after 12 hours). Sources: `docker_config`
//! (environment, Docker config, credential helpers) and ECR
//! (`GetAuthorizationToken`, in `oci::ecr`).

use std::fmt;

use crate::oci::error::RegistryError;

pub mod docker_config;

/// A password or token: never printed, never logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A username and password for a registry.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub password: Secret,
}

/// Where the client gets its login, asked again when the registry rejects it
/// (an ECR token expires after 12 hours).
pub trait LoginSource: Send + Sync {
    fn login(&self) -> futures::future::BoxFuture<'_, Result<Option<Login>, RegistryError>>;
}

impl LoginSource for Option<Login> {
    fn login(&self) -> futures::future::BoxFuture<'_, Result<Option<Login>, RegistryError>> {
        Box::pin(async move { Ok(self.clone()) })
    }
}
