//! Pushing an image from an OCI layout, and pointing new tags at an image the
//! registry already has.
//!
//! Order matters for a registry that is read while we write: blobs first, then
//! child manifests by digest, then the root manifest under each tag — a tag
//! never names an image whose content is not all there.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt as _;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};

use crate::oci::client::Client;
use crate::oci::ecr::{Ecr, EcrError};
use crate::oci::error::{ImmutableTag, RegistryError};
use crate::oci::layout::{Image, Layout, LayoutError};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Ecr(#[from] EcrError),
    #[error(transparent)]
    ImmutableTag(#[from] ImmutableTag),
}

/// Where images go: a registry, and for ECR the API that knows about tag
/// immutability and can retag without the data plane.
pub struct Destination {
    pub client: Client,
    pub ecr: Option<Arc<Ecr>>,
    /// Tags may not move (ECR `IMMUTABLE`); checked before anything is sent.
    pub immutable_tags: bool,
}

impl Destination {
    pub fn reference(&self, tag: &str) -> String {
        format!("{}:{tag}", self.client.repository())
    }

    pub fn pinned(&self, digest: &str) -> String {
        format!("{}@{digest}", self.client.repository())
    }
}

#[derive(Debug, Default)]
pub struct PushReport {
    pub digest: String,
    pub blobs_uploaded: u64,
    pub blobs_present: u64,
    pub bytes_uploaded: u64,
    /// Each tag, and whether it moved (false: it already pointed here).
    pub tags: Vec<(String, bool)>,
}

/// Progress bars on a terminal; a log line per blob elsewhere (CI logs).
pub struct Progress {
    bars: Option<MultiProgress>,
}

impl Progress {
    pub fn auto() -> Progress {
        Progress {
            bars: std::io::stderr().is_terminal().then(MultiProgress::new),
        }
    }

    fn bar(&self, digest: &str, len: u64) -> ProgressBar {
        let Some(bars) = &self.bars else {
            return ProgressBar::hidden();
        };
        let style = ProgressStyle::with_template(
            "{msg:19} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let short = digest.get(..19).unwrap_or(digest).to_owned();
        bars.add(ProgressBar::new(len).with_style(style).with_message(short))
    }
}

pub async fn push(
    dest: &Destination,
    layout: &Layout,
    image: &Image,
    tags: &[String],
    jobs: usize,
    progress: &Progress,
) -> Result<PushReport, PushError> {
    let digest = image.digest();
    let mut report = PushReport {
        digest: digest.clone(),
        ..PushReport::default()
    };
    let current = check_tags(dest, &digest, tags).await?;
    if current.iter().all(|same| *same) {
        report.tags = tags.iter().map(|t| (t.clone(), false)).collect();
        return Ok(report);
    }

    let files = image
        .blobs
        .iter()
        .map(|d| Ok((d.digest().to_string(), layout.blob_file(d)?)))
        .collect::<Result<Vec<_>, LayoutError>>()?;
    let uploaded = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    futures::stream::iter(files.iter().map(Ok::<_, RegistryError>))
        .try_for_each_concurrent(jobs.max(1), |(digest, file)| {
            let (uploaded, bytes) = (&uploaded, &bytes);
            async move {
                if dest.client.blob_exists(digest).await? {
                    return Ok(());
                }
                let bar = progress.bar(digest, file.len);
                dest.client.upload_blob(digest, file, &bar).await?;
                if progress.bars.is_some() {
                    bar.finish();
                } else {
                    // No bars (CI logs): one line per blob instead.
                    tracing::info!("pushed blob {digest} ({})", HumanBytes(file.len));
                }
                uploaded.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(file.len, Ordering::Relaxed);
                Ok(())
            }
        })
        .await?;
    report.blobs_uploaded = uploaded.into_inner();
    report.blobs_present = files.len() as u64 - report.blobs_uploaded;
    report.bytes_uploaded = bytes.into_inner();

    let (root, children) = image.manifests.split_last().expect("a root manifest");
    for child in children {
        dest.client
            .put_manifest(&child.digest, &child.media_type, &child.bytes)
            .await?;
    }
    for (tag, same) in tags.iter().zip(current) {
        if !same {
            put_tag(dest, tag, &root.digest, &root.media_type, &root.bytes).await?;
        }
        report.tags.push((tag.clone(), !same));
    }
    Ok(report)
}

/// For each tag, whether it already points at `digest`. A tag that points
/// elsewhere in an immutable repository stops the push before any upload.
async fn check_tags(
    dest: &Destination,
    digest: &str,
    tags: &[String],
) -> Result<Vec<bool>, PushError> {
    let mut same = Vec::with_capacity(tags.len());
    for tag in tags {
        let existing = dest.client.manifest_digest(tag).await?;
        match existing {
            Some(existing) if existing != digest && dest.immutable_tags => {
                return Err(ImmutableTag {
                    repository: dest.client.repository().to_string(),
                    tag: tag.clone(),
                    existing,
                    wanted: digest.to_owned(),
                }
                .into());
            }
            existing => same.push(existing.as_deref() == Some(digest)),
        }
    }
    Ok(same)
}

/// Puts a manifest under a tag; a registry's refusal to move an immutable tag
/// becomes an error naming both digests.
async fn put_tag(
    dest: &Destination,
    tag: &str,
    digest: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<(), PushError> {
    let Err(err) = dest.client.put_manifest(tag, media_type, bytes).await else {
        return Ok(());
    };
    if matches!(
        err.code(),
        Some("TAG_INVALID" | "MANIFEST_INVALID" | "DENIED")
    ) && let Ok(Some(existing)) = dest.client.manifest_digest(tag).await
        && existing != digest
    {
        return Err(ImmutableTag {
            repository: dest.client.repository().to_string(),
            tag: tag.to_owned(),
            existing,
            wanted: digest.to_owned(),
        }
        .into());
    }
    Err(err.into())
}

/// An image the destination already holds under `tag`.
pub struct Existing {
    pub digest: String,
    pub media_type: String,
    pub manifest: Vec<u8>,
}

pub async fn find(dest: &Destination, tag: &str) -> Result<Option<Existing>, PushError> {
    if let Some(ecr) = &dest.ecr {
        let found = ecr.manifest(&dest.client.repository().path, tag).await?;
        return Ok(found.map(|(manifest, media_type)| Existing {
            digest: crate::oci::layout::sha256_digest(manifest.as_bytes()),
            media_type,
            manifest: manifest.into_bytes(),
        }));
    }
    let found = dest.client.manifest(tag).await?;
    Ok(found.map(|m| Existing {
        digest: m.digest,
        media_type: m.media_type,
        manifest: m.bytes,
    }))
}

/// Points more tags at an existing image; no blob moves. Returns each tag and
/// whether it moved.
pub async fn retag(
    dest: &Destination,
    existing: &Existing,
    tags: &[String],
) -> Result<Vec<(String, bool)>, PushError> {
    let mut done = Vec::with_capacity(tags.len());
    if let Some(ecr) = &dest.ecr {
        let manifest = String::from_utf8_lossy(&existing.manifest);
        for tag in tags {
            let moved = ecr
                .put_tag(
                    &dest.client.repository().path,
                    tag,
                    &manifest,
                    &existing.media_type,
                )
                .await?;
            done.push((tag.clone(), moved));
        }
        return Ok(done);
    }
    let current = check_tags(dest, &existing.digest, tags).await?;
    for (tag, same) in tags.iter().zip(current) {
        if !same {
            put_tag(
                dest,
                tag,
                &existing.digest,
                &existing.media_type,
                &existing.manifest,
            )
            .await?;
        }
        done.push((tag.clone(), !same));
    }
    Ok(done)
}
