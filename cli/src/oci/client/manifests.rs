//! Manifests: a reference resolved to its digest, read, and put.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::oci::error::RegistryError;
use crate::oci::layout::sha256_digest;

use super::{Client, MANIFEST_TYPES, RemoteManifest, header_str};

impl Client {
    /// The digest a tag or digest reference resolves to, if it exists.
    pub async fn manifest_digest(&self, reference: &str) -> Result<Option<String>, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let op = format!("looking up {}:{reference}", self.repo);
        let resp = self
            .call(&op, || {
                self.http.head(url.clone()).header(ACCEPT, MANIFEST_TYPES)
            })
            .await?;
        let Some(resp) = self.found(&op, resp).await? else {
            return Ok(None);
        };
        match header_str(resp.headers(), "docker-content-digest") {
            Some(d) => Ok(Some(d.to_owned())),
            // Not every registry sends the header on HEAD; the body settles it.
            None => Ok(self.manifest(reference).await?.map(|m| m.digest)),
        }
    }

    pub async fn manifest(&self, reference: &str) -> Result<Option<RemoteManifest>, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let op = format!("reading {}:{reference}", self.repo);
        let resp = self
            .call(&op, || {
                self.http.get(url.clone()).header(ACCEPT, MANIFEST_TYPES)
            })
            .await?;
        let Some(resp) = self.found(&op, resp).await? else {
            return Ok(None);
        };
        let media_type = header_str(resp.headers(), CONTENT_TYPE.as_str())
            .unwrap_or_default()
            .to_owned();
        let bytes = resp.bytes().await.map_err(|e| self.transport(&op, e))?;
        Ok(Some(RemoteManifest {
            digest: sha256_digest(&bytes),
            media_type,
            bytes: bytes.to_vec(),
        }))
    }

    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let op = format!("pushing manifest {}:{reference}", self.repo);
        let resp = self
            .call(&op, || {
                self.http
                    .put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(&op, resp).await);
        }
        Ok(())
    }
}
