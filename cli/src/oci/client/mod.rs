//! A client for the OCI distribution API, just the calls a pusher needs:
//! blob HEAD and monolithic upload, manifest HEAD/GET/PUT, and the Basic and
//! Bearer token auth schemes registries use.
//!
//! Uploads are monolithic (POST, then one PUT with the whole blob streamed from
//! disk): ECR's chunked uploads need 5 MiB parts and answer 201 where the spec
//! says 202, and a single PUT is what every registry supports. Transient
//! failures (connection errors, 408/429/5xx) are retried with jittered
//! exponential backoff, honouring `Retry-After`.
//!
//! Here: the client and blobs; `manifests`; `requests` (send, retry,
//! errors); `challenge` (Basic and Bearer auth).

use std::io::SeekFrom;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use backon::ExponentialBuilder;
use indicatif::ProgressBar;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use reqwest::{StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::oci::auth::{LoginSource, Secret};
use crate::oci::error::RegistryError;
use crate::oci::layout::{BlobFile, hex};
use crate::oci::reference::Repository;

mod challenge;
mod manifests;
mod requests;

/// Every manifest type a pusher may meet, for `Accept` headers.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

const CHUNK: usize = 256 << 10;

pub struct Client {
    http: reqwest::Client,
    base: Url,
    repo: Repository,
    login: Arc<dyn LoginSource>,
    authorization: Mutex<Option<Secret>>,
    backoff: ExponentialBuilder,
}

/// A manifest as the registry holds it.
#[derive(Debug, Clone)]
pub struct RemoteManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Client {
    /// `base` is where the registry answers (`https://host` normally; tests
    /// and `--registry-endpoint` point it elsewhere).
    pub fn new(
        base: Url,
        repo: Repository,
        login: Arc<dyn LoginSource>,
        retries: usize,
    ) -> Result<Client, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| RegistryError::Protocol(format!("cannot create an HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            repo,
            login,
            authorization: Mutex::new(None),
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(retries)
                .with_jitter(),
        })
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    fn url(&self, tail: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("/v2/{}/{tail}", self.repo.path));
        url
    }

    pub async fn blob_exists(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let op = format!("checking blob {digest}");
        let resp = self.call(&op, || self.http.head(url.clone())).await?;
        Ok(self.found(&op, resp).await?.is_some())
    }

    /// Uploads a blob from its file, hashing it on the way: a blob whose
    /// content does not match its digest is never completed.
    pub async fn upload_blob(
        &self,
        digest: &str,
        file: &BlobFile,
        progress: &ProgressBar,
    ) -> Result<(), RegistryError> {
        let op = format!("uploading blob {digest}");
        let corrupt: Arc<OnceLock<String>> = Arc::default();
        self.retrying(&op, || async {
            progress.set_position(0);
            let start = self
                .send(&op, || {
                    self.http
                        .post(self.url("blobs/uploads/"))
                        .header(CONTENT_LENGTH, 0)
                })
                .await?;
            if start.status() != StatusCode::ACCEPTED {
                return Err(self.status_error(&op, start).await);
            }
            let mut url = self.location(&op, start.headers())?;
            url.query_pairs_mut().append_pair("digest", digest);
            let put = self
                .send(&op, || {
                    let body = blob_body(file, digest, progress.clone(), &corrupt);
                    self.http
                        .put(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, file.len)
                        .body(body)
                })
                .await;
            if let Some(actual) = corrupt.get() {
                return Err(RegistryError::CorruptBlob {
                    expected: digest.to_owned(),
                    actual: actual.clone(),
                });
            }
            let put = put?;
            if put.status() != StatusCode::CREATED {
                return Err(self.status_error(&op, put).await);
            }
            Ok(())
        })
        .await
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The blob's bytes as a request body: read from disk in chunks, hashed as they
/// go; a mismatch at the end fails the body so the upload never completes.
fn blob_body(
    file: &BlobFile,
    digest: &str,
    progress: ProgressBar,
    corrupt: &Arc<OnceLock<String>>,
) -> reqwest::Body {
    let (path, offset, len) = (file.path.clone(), file.offset, file.len);
    let expected = digest.to_owned();
    let corrupt = corrupt.clone();
    // The check runs before the last chunk is handed over: once the body's
    // length is sent, the stream is not polled again.
    let stream = futures::stream::try_unfold(
        (None::<tokio::io::Take<tokio::fs::File>>, Sha256::new(), len),
        move |(reader, mut hasher, remaining)| {
            let (path, expected, corrupt, progress) = (
                path.clone(),
                expected.clone(),
                corrupt.clone(),
                progress.clone(),
            );
            async move {
                if remaining == 0 {
                    return Ok(None);
                }
                let mut reader = match reader {
                    Some(r) => r,
                    None => {
                        let mut f = tokio::fs::File::open(&path).await?;
                        f.seek(SeekFrom::Start(offset)).await?;
                        f.take(len)
                    }
                };
                let mut buf = vec![0u8; CHUNK.min(remaining as usize)];
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    let _ = corrupt.set(format!("a file {} bytes short", remaining));
                    return Err(std::io::Error::other("blob file is truncated"));
                }
                buf.truncate(n);
                hasher.update(&buf);
                let remaining = remaining - n as u64;
                if remaining == 0 {
                    let actual = format!("sha256:{}", hex(&hasher.clone().finalize()));
                    if actual != expected {
                        let _ = corrupt.set(actual);
                        return Err(std::io::Error::other(
                            "blob content does not match its digest",
                        ));
                    }
                }
                progress.inc(n as u64);
                Ok(Some((buf, (Some(reader), hasher, remaining))))
            }
        },
    );
    reqwest::Body::wrap_stream(stream)
}
