//! Manifest-only retags through the ECR API (`BatchGetImage` +
//! `PutImage`): no blob moves.

use aws_sdk_ecr::types::ImageIdentifier;

use crate::oci::client::MANIFEST_TYPES;
use crate::oci::error::ImmutableTag;
use crate::oci::layout::sha256_digest;

use super::{Ecr, EcrError, api_error};

impl Ecr {
    /// The manifest a tag points at, via the ECR API.
    pub async fn manifest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<(String, String)>, EcrError> {
        let out = self
            .client
            .batch_get_image()
            .repository_name(repository)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .set_accepted_media_types(Some(
                MANIFEST_TYPES.split(", ").map(str::to_owned).collect(),
            ))
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_repository_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(api_error("BatchGetImage", e)),
        };
        Ok(out.images().first().and_then(|image| {
            let manifest = image.image_manifest()?.to_owned();
            let media_type = image
                .image_manifest_media_type()
                .map(str::to_owned)
                .or_else(|| media_type_of(&manifest))?;
            Some((manifest, media_type))
        }))
    }

    /// Points `tag` at an existing manifest without moving any blob. A tag that
    /// already points there is left alone; an immutable tag elsewhere is an
    /// error naming both digests.
    pub async fn put_tag(
        &self,
        repository: &str,
        tag: &str,
        manifest: &str,
        media_type: &str,
    ) -> Result<bool, EcrError> {
        let result = self
            .client
            .put_image()
            .repository_name(repository)
            .image_tag(tag)
            .image_manifest(manifest)
            .image_manifest_media_type(media_type)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        let exists = err.as_service_error().is_some_and(|e| {
            // Real ECR says the tag exists; some stand-ins say the image exists.
            e.is_image_tag_already_exists_exception() || e.is_image_already_exists_exception()
        });
        if !exists {
            return Err(api_error("PutImage", err));
        }
        let wanted = sha256_digest(manifest.as_bytes());
        let existing = self
            .manifest(repository, tag)
            .await?
            .map(|(m, _)| sha256_digest(m.as_bytes()))
            .unwrap_or_else(|| "an unknown digest".to_owned());
        if existing == wanted {
            Ok(false)
        } else {
            Err(ImmutableTag {
                repository: repository.to_owned(),
                tag: tag.to_owned(),
                existing,
                wanted,
            }
            .into())
        }
    }
}

fn media_type_of(manifest: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(manifest)
        .ok()?
        .get("mediaType")?
        .as_str()
        .map(str::to_owned)
}
