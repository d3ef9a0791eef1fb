//! A client for the OCI distribution API, just the calls a pusher needs:
//! blob HEAD and monolithic upload, manifest HEAD/GET/PUT, and the Basic and
//! Bearer token auth schemes registries use.
//!
//! Uploads are monolithic (POST, then one PUT with the whole blob streamed from
//! disk): ECR's chunked uploads need 5 MiB parts and answer 201 where the spec
//! says 202, and a single PUT is what every registry supports. Transient
//! failures (connection errors, 408/429/5xx) are retried with jittered
//! exponential backoff, honouring `Retry-After`.

use std::io::SeekFrom;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use base64::Engine as _;
use indicatif::ProgressBar;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::oci::auth::{Login, LoginSource, Secret};
use crate::oci::error::RegistryError;
use crate::oci::layout::{BlobFile, hex, sha256_digest};
use crate::oci::reference::Repository;

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

    /// One request, retried while it fails transiently.
    async fn call(
        &self,
        op: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.retrying(op, || self.send(op, &make)).await
    }

    /// `Some` for 200, `None` for 404, an error for anything else.
    async fn found(&self, op: &str, resp: Response) -> Result<Option<Response>, RegistryError> {
        match resp.status() {
            StatusCode::OK => Ok(Some(resp)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(op, resp).await),
        }
    }

    async fn retrying<T, F, Fut>(&self, op: &str, f: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        f.retry(self.backoff)
            .when(RegistryError::is_transient)
            .adjust(|e, planned| match e {
                RegistryError::Status {
                    retry_after: Some(wait),
                    ..
                } => Some((*wait).min(Duration::from_secs(60))),
                _ => planned,
            })
            .notify(|e, wait| tracing::warn!("{e}; retrying {op} in {wait:.1?}"))
            .await
    }

    /// Sends one request, answering an auth challenge once. Failures that
    /// should be retried come back as errors; other answers as responses.
    async fn send(
        &self,
        op: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut challenged = false;
        loop {
            let mut request = make();
            if let Some(auth) = self.authorization.lock().expect("lock").clone() {
                request = request.header(AUTHORIZATION, auth.expose());
            }
            let resp = request.send().await.map_err(|e| self.transport(op, e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                if challenged {
                    let detail = self.status_error(op, resp).await.to_string();
                    return Err(RegistryError::Unauthorized {
                        op: op.to_owned(),
                        host: self.repo.host.clone(),
                        detail: detail.split_once(": ").map(|(_, m)| m.to_owned()),
                    });
                }
                challenged = true;
                self.authenticate(op, resp.headers()).await?;
                continue;
            }
            if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
            {
                return Err(self.status_error(op, resp).await);
            }
            return Ok(resp);
        }
    }

    /// Answers a `WWW-Authenticate` challenge: Basic with the login, or a
    /// Bearer token from the realm, scoped to this repository.
    async fn authenticate(&self, op: &str, headers: &HeaderMap) -> Result<(), RegistryError> {
        let unauthorized = |detail: &str| RegistryError::Unauthorized {
            op: op.to_owned(),
            host: self.repo.host.clone(),
            detail: Some(detail.to_owned()),
        };
        let challenge = header_str(headers, WWW_AUTHENTICATE.as_str())
            .and_then(Challenge::parse)
            .ok_or_else(|| {
                unauthorized("the registry sent no usable WWW-Authenticate challenge")
            })?;
        let login = self.login.login().await?;
        let header = match challenge.scheme.as_str() {
            "basic" => {
                let login =
                    login.ok_or_else(|| unauthorized("it requires a login and none was found"))?;
                basic(&login)
            }
            "bearer" => self.bearer_token(op, &challenge, login.as_ref()).await?,
            other => return Err(unauthorized(&format!("unsupported auth scheme {other:?}"))),
        };
        *self.authorization.lock().expect("lock") = Some(header);
        Ok(())
    }

    async fn bearer_token(
        &self,
        op: &str,
        challenge: &Challenge,
        login: Option<&Login>,
    ) -> Result<Secret, RegistryError> {
        let realm = challenge
            .param("realm")
            .and_then(|r| Url::parse(r).ok())
            .ok_or_else(|| RegistryError::Protocol(format!("{op}: token realm is not a URL")))?;
        let mut url = realm;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                q.append_pair("service", service);
            }
            q.append_pair("scope", &format!("repository:{}:pull,push", self.repo.path));
        }
        let mut request = self.http.get(url);
        if let Some(login) = login {
            request = request.header(AUTHORIZATION, basic(login).expose());
        }
        let resp = request.send().await.map_err(|e| self.transport(op, e))?;
        if !resp.status().is_success() {
            return Err(RegistryError::Unauthorized {
                op: op.to_owned(),
                host: self.repo.host.clone(),
                detail: Some(format!("the token service answered {}", resp.status())),
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = resp
            .json()
            .await
            .map_err(|e| RegistryError::Protocol(format!("{op}: unreadable token: {e}")))?;
        let token = token.token.or(token.access_token).ok_or_else(|| {
            RegistryError::Protocol(format!("{op}: the token service sent no token"))
        })?;
        Ok(Secret::new(format!("Bearer {token}")))
    }

    fn location(&self, op: &str, headers: &HeaderMap) -> Result<Url, RegistryError> {
        let location = header_str(headers, LOCATION.as_str()).ok_or_else(|| {
            RegistryError::Protocol(format!("{op}: the registry sent no upload location"))
        })?;
        self.base
            .join(location)
            .map_err(|e| RegistryError::Protocol(format!("{op}: bad upload location: {e}")))
    }

    fn transport(&self, op: &str, e: reqwest::Error) -> RegistryError {
        // The error's Display includes the URL; ours never carry credentials.
        RegistryError::Transport {
            op: op.to_owned(),
            host: self.repo.host.clone(),
            detail: rollout_core::error_chain::error_chain(&e),
        }
    }

    async fn status_error(&self, op: &str, resp: Response) -> RegistryError {
        let status = resp.status();
        let retry_after = header_str(resp.headers(), RETRY_AFTER.as_str())
            .and_then(|s| s.trim().parse().ok())
            .map(Duration::from_secs);
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<ErrorBody>,
        }
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            code: Option<String>,
            message: Option<String>,
        }
        let body = resp.bytes().await.unwrap_or_default();
        let first = serde_json::from_slice::<Errors>(&body)
            .ok()
            .and_then(|e| e.errors.into_iter().next());
        let (code, message) = match first {
            Some(e) => (e.code, e.message),
            None => (None, None),
        };
        RegistryError::Status {
            op: op.to_owned(),
            host: self.repo.host.clone(),
            status,
            message: match (&code, message) {
                (Some(c), Some(m)) => Some(format!("{c}: {m}")),
                (c, m) => m.or(c.clone()),
            },
            code,
            retry_after,
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn basic(login: &Login) -> Secret {
    let raw = format!("{}:{}", login.username, login.password.expose());
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
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

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, PartialEq)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let mut params = Vec::new();
        let mut chars = rest.trim().chars().peekable();
        loop {
            while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
            let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
            if key.is_empty() || chars.next() != Some('=') {
                break;
            }
            let mut value = String::new();
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            } else {
                value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            }
            params.push((key.trim().to_ascii_lowercase(), value));
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example/token"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = Challenge::parse(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.param("realm")),
            ("basic", Some("basic-realm"))
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let login = Login {
            username: "AWS".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{login:?}").contains("hunter2"));
        assert!(!format!("{:?}", basic(&login)).contains("aHVudGVy"));
    }
}
