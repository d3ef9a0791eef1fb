//! Image test parts: OCI layouts written byte by byte (so tests know every
//! digest), a real distribution registry, and the moto AWS API stand-in.
//!
//! The registry is observed through its storage directory, not through
//! gantry's own client.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sha2::{Digest as _, Sha256};

use crate::{free_port, wait_for_port, which};

pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// A layer's content: literal bytes, or `size` pseudo-random bytes from a
/// seed (written in chunks, so gigabyte layers never sit in memory).
#[derive(Clone)]
pub enum Layer {
    Bytes(Vec<u8>),
    Random { size: u64, seed: u64 },
}

/// A descriptor as written into manifests.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

/// Writes an OCI image layout under `dir`, one call per image.
pub struct LayoutWriter {
    pub dir: PathBuf,
    index: Vec<serde_json::Value>,
}

impl LayoutWriter {
    pub fn new(dir: &Path) -> LayoutWriter {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let writer = LayoutWriter {
            dir: dir.to_owned(),
            index: Vec::new(),
        };
        writer.write_index();
        writer
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Blob {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        std::fs::write(self.blob_path(&digest), bytes).unwrap();
        Blob {
            digest,
            size: bytes.len() as u64,
        }
    }

    pub fn put_layer(&self, layer: &Layer) -> Blob {
        let (size, seed) = match layer {
            Layer::Bytes(b) => return self.put_bytes(b),
            Layer::Random { size, seed } => (*size, *seed),
        };
        let tmp = self.dir.join("blobs/tmp");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
        let mut hasher = Sha256::new();
        let mut state = seed | 1;
        let mut chunk = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            for word in chunk[..n].chunks_mut(8) {
                // xorshift64: fast, and incompressible enough for a benchmark.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let bytes = state.to_le_bytes();
                word.copy_from_slice(&bytes[..word.len()]);
            }
            hasher.update(&chunk[..n]);
            file.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        file.flush().unwrap();
        drop(file);
        let digest = format!("sha256:{:x}", hasher.finalize());
        std::fs::rename(&tmp, self.blob_path(&digest)).unwrap();
        Blob { digest, size }
    }

    /// An image manifest (not yet in the index); returns its descriptor.
    pub fn manifest(&self, layers: &[Layer], arch: &str) -> Blob {
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {},
        });
        let config = self.put_bytes(config.to_string().as_bytes());
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| descriptor(LAYER_TYPE, &self.put_layer(l)))
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": layers,
        });
        self.put_bytes(serde_json::to_vec_pretty(&manifest).unwrap().as_slice())
    }

    /// A single-platform image under `tag`; returns the manifest digest.
    pub fn image(&mut self, tag: &str, layers: &[Layer]) -> String {
        let manifest = self.manifest(layers, "amd64");
        self.name(tag, MANIFEST_TYPE, &manifest);
        manifest.digest
    }

    /// A multi-platform index under `tag`; returns the index digest.
    pub fn multi_platform(&mut self, tag: &str, per_arch: &[(&str, Vec<Layer>)]) -> String {
        let manifests: Vec<serde_json::Value> = per_arch
            .iter()
            .map(|(arch, layers)| {
                let mut d = descriptor(MANIFEST_TYPE, &self.manifest(layers, arch));
                d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
                d
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": manifests,
        });
        let blob = self.put_bytes(index.to_string().as_bytes());
        self.name(tag, INDEX_TYPE, &blob);
        blob.digest
    }

    fn name(&mut self, tag: &str, media_type: &str, blob: &Blob) {
        let mut d = descriptor(media_type, blob);
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(d);
        self.write_index();
    }

    fn write_index(&self) {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": self.index,
        });
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }

    /// The layout as an OCI archive (a plain tar) at `path`.
    pub fn archive(&self, path: &Path) {
        let status = Command::new("tar")
            .arg("-cf")
            .arg(path)
            .arg("-C")
            .arg(&self.dir)
            .args(["oci-layout", "index.json", "blobs"])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn descriptor(media_type: &str, blob: &Blob) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": blob.digest, "size": blob.size})
}

/// The distribution registry (Debian `docker-registry`) on a free loopback
/// port, optionally with htpasswd basic auth.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(login: Option<(&str, &str)>) -> Registry {
        let binary = which("docker-registry")
            .expect("docker-registry is not installed: run tests/setup, which installs it");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut auth = String::new();
        if let Some((user, password)) = login {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) is not installed: run tests/setup");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            auth = format!(
                "auth: {{htpasswd: {{realm: basic-realm, path: {}}}}}\n",
                file.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n{auth}",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdout(std::fs::File::create(dir.path().join("access.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("start docker-registry");
        wait_for_port(port, "docker-registry");
        Registry { child, port, dir }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("storage/docker/registry/v2")
    }

    /// The digest a tag points at, read from the registry's storage.
    pub fn tag(&self, repo: &str, tag: &str) -> Option<String> {
        let link = self.storage().join(format!(
            "repositories/{repo}/_manifests/tags/{tag}/current/link"
        ));
        std::fs::read_to_string(link).ok()
    }

    /// Where the registry keeps a blob (a manifest is one too).
    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    /// The bytes of a stored manifest, as text.
    pub fn manifest(&self, digest: &str) -> String {
        std::fs::read_to_string(self.blob_path(digest))
            .unwrap_or_else(|e| panic!("manifest {digest} not in the registry: {e}"))
    }

    /// Whether the registry stores a blob with this digest.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Blob uploads the registry was sent (completing PUTs), from its access log.
    pub fn uploads(&self) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/"))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The moto AWS API stand-in, from the virtualenv `tests/setup` makes.
pub struct Moto {
    child: Child,
    pub port: u16,
}

/// moto's fixed account and the registry password its ECR tokens carry.
pub const MOTO_ACCOUNT: &str = "123456789012";

impl Moto {
    pub fn start() -> Moto {
        let server = moto_server();
        assert!(
            server.is_file(),
            "{} is missing: run tests/setup, which installs moto",
            server.display()
        );
        let port = free_port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        wait_for_port(port, "moto_server");
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for a process that talks to this moto as AWS.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
    }

    /// The ECR registry host moto's tokens are for.
    pub fn ecr_host(&self) -> String {
        format!("{MOTO_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com")
    }

    /// Runs a Python script with a boto3 ECR client `c` bound to this moto and
    /// parses what it prints as JSON: a client independent of gantry's.
    pub fn boto3(&self, script: &str) -> serde_json::Value {
        self.boto3_for("ecr", script)
    }

    /// Like `boto3`, with a client `c` for another AWS service.
    pub fn boto3_for(&self, service: &str, script: &str) -> serde_json::Value {
        self.boto3_in("us-east-1", service, script)
    }

    /// Like `boto3_for`, with the client in `region`.
    pub fn boto3_in(&self, region: &str, service: &str, script: &str) -> serde_json::Value {
        let python = moto_server().with_file_name("python");
        let out = Command::new(python)
            .arg("-c")
            .arg(format!(
                "import boto3, json\nc = boto3.client('{service}', endpoint_url='{}', region_name='{region}', aws_access_key_id='t', aws_secret_access_key='t')\n{script}",
                self.endpoint()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// ECR's API and registry are one store; moto and the test registry
    /// are two: this tells moto's ECR (in `region`) that `repo:tag` is the
    /// registry's manifest `digest`, as real ECR would know.
    pub fn mirror(&self, registry: &Registry, region: &str, repo: &str, tag: &str, digest: &str) {
        let manifest = registry.manifest(digest);
        self.boto3_in(
            region,
            "ecr",
            &format!(
                "c.put_image(repositoryName='{repo}', imageTag='{tag}', imageManifest={manifest:?}, \
                 imageManifestMediaType='application/vnd.oci.image.manifest.v1+json')\nprint('{{}}')"
            ),
        );
    }

    /// The manifest ECR's API (moto, in `region`) has for `repo:tag` (not
    /// its digest: moto computes that from its own serialisation).
    pub fn tag_manifest(&self, region: &str, repo: &str, tag: &str) -> Option<String> {
        let found = self.boto3_in(
            region,
            "ecr",
            &format!(
                "r = c.batch_get_image(repositoryName='{repo}', imageIds=[{{'imageTag': '{tag}'}}])['images']\n\
                 print(json.dumps(r[0]['imageManifest'] if r else None))"
            ),
        );
        found.as_str().map(str::to_owned)
    }

    /// The registry password in moto's ECR tokens.
    pub fn ecr_password(&self) -> String {
        format!("{MOTO_ACCOUNT}-auth-token")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where tests/setup puts moto (`GANTRY_MOTO_VENV` overrides, as there).
pub fn moto_server() -> PathBuf {
    crate::venv("GANTRY_MOTO_VENV", "moto").join("bin/moto_server")
}

/// A buildah storage configuration in `dir` (vfs, storage inside `dir`):
/// daemonless builds with no privileges beyond what this sandbox allows,
/// with chroot isolation. Its path, for `CONTAINERS_STORAGE_CONF`.
pub fn buildah_storage(dir: &Path) -> PathBuf {
    let conf = dir.join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n",
            dir.display()
        ),
    )
    .unwrap();
    conf
}

/// A request the fault proxy answers itself instead of forwarding.
pub struct Fault {
    pub method: &'static str,
    /// A substring of the request path.
    pub path: &'static str,
    pub status: u16,
    pub retry_after: Option<u64>,
    /// How many matching requests get the fault.
    pub times: usize,
}

/// An HTTP proxy in front of a real registry that injects failures (5xx,
/// 429 with `Retry-After`) into chosen requests, and records what it did.
pub struct FaultProxy {
    pub port: u16,
    pub injected: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl FaultProxy {
    pub fn start(upstream: &str, faults: Vec<Fault>) -> FaultProxy {
        use axum::body::Body;
        use axum::extract::{Request, State};
        use axum::response::Response;
        use std::sync::{Arc, Mutex};

        #[derive(Clone)]
        struct Shared {
            upstream: String,
            me: String,
            client: reqwest::Client,
            faults: Arc<Mutex<Vec<Fault>>>,
            injected: Arc<Mutex<Vec<String>>>,
        }

        async fn handle(State(s): State<Shared>, req: Request) -> Response {
            let method = req.method().clone();
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let fault = {
                let mut faults = s.faults.lock().unwrap();
                faults
                    .iter_mut()
                    .find(|f| f.times > 0 && f.method == method.as_str() && path.contains(f.path))
                    .map(|f| {
                        f.times -= 1;
                        (f.status, f.retry_after)
                    })
            };
            if let Some((status, retry_after)) = fault {
                s.injected
                    .lock()
                    .unwrap()
                    .push(format!("{status} {method} {path}"));
                let mut resp = Response::builder().status(status);
                if let Some(secs) = retry_after {
                    resp = resp.header("retry-after", secs.to_string());
                }
                return resp.body(Body::empty()).unwrap();
            }
            let (parts, body) = req.into_parts();
            let mut forward = s
                .client
                .request(parts.method, format!("http://{}{path}", s.upstream));
            for (name, value) in &parts.headers {
                if name != "host" {
                    forward = forward.header(name, value);
                }
            }
            let upstream = forward
                .body(reqwest::Body::wrap_stream(body.into_data_stream()))
                .send()
                .await
                .expect("the registry answers");
            let mut resp = Response::builder().status(upstream.status().as_u16());
            for (name, value) in upstream.headers() {
                let value = value
                    .to_str()
                    .unwrap_or_default()
                    .replace(&s.upstream, &s.me);
                resp = resp.header(name.as_str(), value);
            }
            resp.body(Body::from_stream(upstream.bytes_stream()))
                .unwrap()
        }

        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let injected = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            upstream: upstream.to_owned(),
            me: format!("127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            faults: Arc::new(Mutex::new(faults)),
            injected: injected.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        runtime.spawn(async move { axum::serve(listener, app).await });
        FaultProxy {
            port,
            injected,
            _runtime: runtime,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
