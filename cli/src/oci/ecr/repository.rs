//! Repositories: created or brought to their settings (tag mutability, scan
//! on push, lifecycle policy), and whether tags may move.

use std::path::Path;

use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability};

use super::{Ecr, EcrError, RepoSettings, api_error};

impl Ecr {
    /// Creates the repository, or brings an existing one to the settings.
    /// Returns what it did, for the log.
    pub async fn ensure_repository(
        &self,
        name: &str,
        settings: &RepoSettings,
    ) -> Result<Vec<String>, EcrError> {
        let mutability = if settings.immutable_tags {
            ImageTagMutability::Immutable
        } else {
            ImageTagMutability::Mutable
        };
        let policy = settings
            .lifecycle_policy
            .as_deref()
            .map(read_lifecycle_policy)
            .transpose()?;
        let scanning = ImageScanningConfiguration::builder()
            .scan_on_push(settings.scan_on_push)
            .build();
        let mut done = Vec::new();
        match self.repository(name).await? {
            None => {
                self.client
                    .create_repository()
                    .repository_name(name)
                    .image_tag_mutability(mutability)
                    .image_scanning_configuration(scanning)
                    .send()
                    .await
                    .map_err(|e| api_error("CreateRepository", e))?;
                done.push(format!("created repository {name}"));
            }
            Some(repo) => {
                if repo.image_tag_mutability() != Some(&mutability) {
                    self.client
                        .put_image_tag_mutability()
                        .repository_name(name)
                        .image_tag_mutability(mutability.clone())
                        .send()
                        .await
                        .map_err(|e| api_error("PutImageTagMutability", e))?;
                    done.push(format!("set tag mutability to {}", mutability.as_str()));
                }
                let scan = repo
                    .image_scanning_configuration()
                    .is_some_and(|c| c.scan_on_push());
                if scan != settings.scan_on_push {
                    self.client
                        .put_image_scanning_configuration()
                        .repository_name(name)
                        .image_scanning_configuration(scanning)
                        .send()
                        .await
                        .map_err(|e| api_error("PutImageScanningConfiguration", e))?;
                    done.push(format!("set scan on push to {}", settings.scan_on_push));
                }
            }
        }
        if let Some(policy) = policy {
            let current = match self
                .client
                .get_lifecycle_policy()
                .repository_name(name)
                .send()
                .await
            {
                Ok(out) => out.lifecycle_policy_text().map(str::to_owned),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_lifecycle_policy_not_found_exception()) =>
                {
                    None
                }
                Err(e) => return Err(api_error("GetLifecyclePolicy", e)),
            };
            let same = current
                .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
                .is_some_and(|c| c == policy);
            if !same {
                self.client
                    .put_lifecycle_policy()
                    .repository_name(name)
                    .lifecycle_policy_text(policy.to_string())
                    .send()
                    .await
                    .map_err(|e| api_error("PutLifecyclePolicy", e))?;
                done.push("set the lifecycle policy".to_owned());
            }
        }
        Ok(done)
    }

    pub(super) async fn repository(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_ecr::types::Repository>, EcrError> {
        match self
            .client
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.repositories().first().cloned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_repository_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(api_error("DescribeRepositories", e)),
        }
    }

    /// Whether the repository refuses to move tags. Unknown (no permission to
    /// describe it, or it does not exist yet) counts as mutable: the registry
    /// still enforces immutability on push.
    pub async fn tags_immutable(&self, name: &str) -> bool {
        match self.repository(name).await {
            Ok(Some(repo)) => repo
                .image_tag_mutability()
                .is_some_and(|m| *m == ImageTagMutability::Immutable),
            Ok(None) => false,
            Err(e) => {
                tracing::debug!("cannot read the tag mutability of {name}: {e}");
                false
            }
        }
    }
}

fn read_lifecycle_policy(path: &Path) -> Result<serde_json::Value, EcrError> {
    let err = |what: String| EcrError::LifecyclePolicy {
        path: path.display().to_string(),
        what,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "line {} column {}: not JSON: {e}",
            e.line(),
            e.column()
        ))
    })?;
    if !value.get("rules").is_some_and(|r| r.is_array()) {
        return Err(err("expected an object with a \"rules\" array".into()));
    }
    Ok(value)
}
