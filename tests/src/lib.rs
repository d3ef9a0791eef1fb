//! Test harness: runs the built binaries against real local servers.
//!
//! Git is observed with the `git` command line (an independent client), and
//! smart HTTP is served by `git http-backend` behind lighttpd with basic auth.
//! `tests/run` (and so `.ci/run`) installs what is needed; a missing server
//! fails the test with a message saying so, never skips it.

pub mod act;
pub mod alb_sim;
pub mod aws;
pub mod browser;
pub mod canary;
pub mod cluster;
pub mod controller;
pub mod fixtures;
pub mod github;
pub mod kube_fake;
pub mod kube_mock;
pub mod oci;
pub mod outage;
pub mod prom;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A built workspace binary, next to the test executable's `deps/` folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first (tests/run does)",
        path.display()
    );
    path
}

/// The GitHub Actions context a process would inherit from a suite run in
/// Actions; tests decide what context exists.
pub const ACTIONS_CONTEXT: [&str; 12] = [
    "GITHUB_ACTIONS",
    "GITHUB_OUTPUT",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_ACTOR",
    "GITHUB_ACTOR_ID",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GITHUB_API_URL",
    "GITHUB_REPOSITORY",
    "GANTRY_GITHUB_APP_ID",
    "GANTRY_GITHUB_APP_KEY_FILE",
    "GANTRY_GITHUB_APP_PRIVATE_KEY",
];

pub fn gantry() -> Command {
    let mut cmd = Command::new(binary("gantry"));
    for var in ACTIONS_CONTEXT {
        cmd.env_remove(var);
    }
    cmd.env("GANTRY_LOG", "info");
    cmd
}

/// The outcome of a command, with its output as text.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn run(cmd: &mut Command) -> Run {
    cmd.output().expect("spawn").into()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `gantry analysis run -f FILE --arg A…`.
pub fn analysis_run(file: &Path, args: &[&str]) -> Run {
    let mut cmd = gantry();
    cmd.args(["analysis", "run", "-f"]).arg(file);
    for a in args {
        cmd.args(["--arg", a]);
    }
    run(&mut cmd)
}

/// Runs git in `dir` and returns stdout without trailing white space;
/// panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_raw(dir, args).trim_end().to_string()
}

/// Like [`git`], with stdout exactly as printed.
pub fn git_raw(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Seeder",
            "-c",
            "user.email=seed@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .output()
        .expect("git on PATH");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare repository on `main` seeded with `files`, and a place for clones.
pub struct Remote {
    pub dir: tempfile::TempDir,
    pub bare: PathBuf,
}

impl Remote {
    pub fn new(files: &[(&str, &str)]) -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("repos").join("app.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(&bare, &["config", "http.receivepack", "true"]);
        let seed = dir.path().join("seed");
        git(dir.path(), &["clone", "-q", bare.to_str().unwrap(), "seed"]);
        for (path, content) in files {
            let p = seed.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", "seed"]);
        git(&seed, &["push", "-q", "origin", "main"]);
        Remote { dir, bare }
    }

    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// A fresh clone (with `origin` set to `url`) named `name`.
    pub fn clone_as(&self, name: &str, url: &str) -> PathBuf {
        self.clone_with(name, url, &[])
    }

    /// A clone with one commit of history, as `actions/checkout` makes by default.
    pub fn shallow_clone_as(&self, name: &str, url: &str) -> PathBuf {
        self.clone_with(name, url, &["--depth", "1"])
    }

    fn clone_with(&self, name: &str, url: &str, flags: &[&str]) -> PathBuf {
        let path = self.dir.path().join(name);
        let source = format!("file://{}", self.bare.display());
        let mut args = vec!["clone", "-q"];
        args.extend(flags);
        args.extend([source.as_str(), name]);
        git(self.dir.path(), &args);
        git(&path, &["remote", "set-url", "origin", url]);
        path
    }

    pub fn log(&self) -> String {
        git(&self.bare, &["log", "--format=%H %P|%s", "main"])
    }

    pub fn show(&self, path: &str) -> String {
        git_raw(&self.bare, &["show", &format!("main:{path}")])
    }
}

/// What a race of pipelines measured.
pub struct Race {
    pub wall: Duration,
    /// Push attempts each pipeline used.
    pub attempts: Vec<usize>,
}

/// Starts one `gantry bump --commit --push` per spec at once, each in its
/// own clone of `remote` whose origin is `url`; asserts every one succeeds.
pub fn race_pipelines(remote: &Remote, url: &str, file: &str, specs: &[String]) -> Race {
    let clones: Vec<PathBuf> = (0..specs.len())
        .map(|i| remote.clone_as(&format!("racer{i}"), url))
        .collect();
    let start = Instant::now();
    let children: Vec<Child> = clones
        .iter()
        .zip(specs)
        .map(|(work, spec)| {
            gantry()
                .current_dir(work)
                .env("GANTRY_GIT_USERNAME", HTTP_USER)
                .env("GANTRY_GIT_TOKEN", HTTP_PASSWORD)
                .args([
                    "bump",
                    "-f",
                    file,
                    "-i",
                    spec,
                    "--commit",
                    "--push",
                    "--max-attempts",
                    "60",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn gantry")
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().into())
        .collect();
    let wall = start.elapsed();
    let attempts = runs
        .iter()
        .zip(specs)
        .map(|(r, spec)| {
            assert_eq!(r.code, 0, "pipeline {spec} failed: {}", r.stderr);
            // "pushed <sha> to origin/main after N attempts" (no suffix: 1)
            r.stdout
                .split(" after ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1)
        })
        .collect();
    Race { wall, attempts }
}

/// `git http-backend` behind lighttpd on a free loopback port, serving the
/// bare repositories under `root` with basic auth (`user`/`password`).
pub struct HttpGit {
    child: Child,
    pub port: u16,
    _conf: tempfile::TempDir,
}

pub const HTTP_USER: &str = "ci";
pub const HTTP_PASSWORD: &str = "s3cret-token";

impl HttpGit {
    pub fn start(root: &Path) -> HttpGit {
        let lighttpd =
            which("lighttpd").expect("lighttpd is not installed: run tests/run, which installs it");
        let backend = [
            "/usr/lib/git-core/git-http-backend",
            "/usr/libexec/git-core/git-http-backend",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("git-http-backend not found");
        let conf = tempfile::tempdir().unwrap();
        let port = free_port();
        let users = conf.path().join("users");
        std::fs::write(&users, format!("{HTTP_USER}:{HTTP_PASSWORD}\n")).unwrap();
        let config = format!(
            r#"server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{conf}/error.log"
server.modules = ("mod_alias", "mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv")
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "")
  auth.backend = "plain"
  auth.backend.plain.userfile = "{users}"
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
}}
"#,
            root = root.display(),
            conf = conf.path().display(),
            users = users.display(),
        );
        let path = conf.path().join("lighttpd.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(lighttpd)
            .args(["-D", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lighttpd");
        wait_for_port(port, "lighttpd");
        HttpGit {
            child,
            port,
            _conf: conf,
        }
    }

    /// The URL of `repo` without credentials (gantry gets them from env).
    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/git/{repo}", self.port)
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a server listens on `port` (servers here start in seconds).
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Serves `app` on a free loopback port from a runtime of its own; the
/// server lives as long as the returned runtime. The port is bound here,
/// not picked and bound later, so nothing can take it in between.
pub fn serve(app: axum::Router, what: &str) -> (u16, tokio::runtime::Runtime) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = listen();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, app).await.unwrap();
    });
    wait_for_port(port, what);
    (port, runtime)
}

/// `GET http://127.0.0.1:<port><path>`: status and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

/// SIGTERM, as the kubelet sends it on shutdown.
pub fn sigterm(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill(2)");
}

/// A loopback port free now, and never handed out before in this process:
/// servers started side by side (moto takes seconds to bind) must not be
/// given the same one.
pub fn free_port() -> u16 {
    listen().local_addr().unwrap().port()
}

/// A loopback listener on a port never handed out before in this process
/// (`free_port`'s may still be waiting for their server to bind them).
fn listen() -> TcpListener {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if GIVEN.lock().unwrap().insert(port) {
            return listener;
        }
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A virtualenv tests/setup makes under `~/.cache/gantry/NAME`, or where
/// the environment variable `var` says (as tests/setup reads it).
pub fn venv(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        PathBuf::from(home).join(".cache/gantry").join(name)
    })
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl kustomize DIR`: the rendered YAML stream.
pub fn kustomize(dir: &Path) -> String {
    let kubectl = which("kubectl").expect("kubectl is not installed: run tests/setup");
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 YAML")
}

/// Compares `actual` with `tests/golden/NAME`; `GANTRY_BLESS=1` rewrites
/// the file instead (review the diff).
pub fn golden(name: &str, actual: &str) {
    let path = repo().join("tests/golden").join(name);
    if std::env::var_os("GANTRY_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} differs (GANTRY_BLESS=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}
