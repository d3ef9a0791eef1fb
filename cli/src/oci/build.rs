//! Building an image with a real builder — `docker buildx` when it is there,
//! daemonless `buildah` otherwise — into an OCI archive that `oci::push`
//! pushes. Also the tags and OCI labels a build gets from its git checkout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::oci::reference::check_tag;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "no image builder found: install docker with the buildx plugin, or buildah (no daemon needed)"
    )]
    NoBuilder,
    #[error("{builder} is not usable here: {detail}")]
    Unusable {
        builder: &'static str,
        detail: String,
    },
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Builder {
    Buildx,
    Buildah,
}

impl Builder {
    fn name(self) -> &'static str {
        match self {
            Builder::Buildx => "docker buildx",
            Builder::Buildah => "buildah",
        }
    }

    /// The requested builder if it works, or the first that does.
    pub fn pick(wanted: Option<Builder>) -> Result<Builder, BuildError> {
        match wanted {
            Some(b) => b
                .probe()
                .map(|()| b)
                .map_err(|detail| BuildError::Unusable {
                    builder: b.name(),
                    detail,
                }),
            None => [Builder::Buildx, Builder::Buildah]
                .into_iter()
                .find(|b| b.probe().is_ok())
                .ok_or(BuildError::NoBuilder),
        }
    }

    fn probe(self) -> Result<(), String> {
        let output = |program: &str, args: &[&str]| match Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(format!("{program}: {e}")),
        };
        match self {
            Builder::Buildah => output("buildah", &["--version"]).map(drop),
            Builder::Buildx => {
                let inspect = output("docker", &["buildx", "inspect"])?;
                let driver = inspect
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Driver:"))
                    .map(str::trim);
                buildx_driver_exports_oci(driver)
            }
        }
    }
}

/// The default `docker` driver cannot export OCI archives (unless the engine
/// uses the containerd image store, which gantry does not assume).
fn buildx_driver_exports_oci(driver: Option<&str>) -> Result<(), String> {
    match driver {
        Some("docker") => Err(
            "the current buildx builder uses the `docker` driver, which cannot \
             export OCI archives; create one with `docker buildx create --use` \
             (docker/setup-buildx-action does)"
                .to_owned(),
        ),
        Some(_) => Ok(()),
        None => Err("`docker buildx inspect` names no driver".to_owned()),
    }
}

/// What to build and where the OCI archive goes.
#[derive(Debug, Clone)]
pub struct Spec {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub build_args: Vec<(String, String)>,
    pub platforms: Vec<String>,
    pub target: Option<String>,
    pub labels: Vec<(String, String)>,
    /// Where the OCI archive is written, and the name it gets inside.
    pub output: PathBuf,
    pub name: String,
}

/// The commands that build `spec`, in order. The last ones clean the
/// builder's local storage; an image that is pushed needs no local copy.
pub fn commands(builder: Builder, spec: &Spec) -> Vec<Command> {
    let archive = format!("oci-archive:{}:{}", spec.output.display(), spec.name);
    match builder {
        Builder::Buildx => {
            let mut build = Command::new("docker");
            build
                .args(["buildx", "build", "--file"])
                .arg(&spec.dockerfile);
            common_args(&mut build, spec);
            for (k, v) in &spec.labels {
                build.arg("--annotation").arg(format!("{k}={v}"));
            }
            build.arg("--output").arg(format!(
                "type=oci,dest={},name={}",
                spec.output.display(),
                spec.name
            ));
            build.arg(&spec.context);
            vec![build]
        }
        Builder::Buildah => {
            let local = format!("localhost/gantry-build:{}", spec.name);
            let multi = spec.platforms.len() > 1;
            let mut build = Command::new("buildah");
            build.args(["build", "--file"]).arg(&spec.dockerfile);
            build
                .arg(if multi { "--manifest" } else { "--tag" })
                .arg(&local);
            common_args(&mut build, spec);
            for (k, v) in &spec.labels {
                build.arg("--annotation").arg(format!("{k}={v}"));
            }
            build.arg(&spec.context);
            let mut push = Command::new("buildah");
            if multi {
                push.args(["manifest", "push", "--all", "--format", "oci"]);
            } else {
                push.args(["push", "--format", "oci"]);
            }
            push.arg(&local).arg(&archive);
            let mut clean = Command::new("buildah");
            if multi {
                clean.args(["manifest", "rm"]).arg(&local);
            } else {
                clean.args(["rmi", "--force"]).arg(&local);
            }
            vec![build, push, clean]
        }
    }
}

fn common_args(cmd: &mut Command, spec: &Spec) {
    if !spec.platforms.is_empty() {
        cmd.arg("--platform").arg(spec.platforms.join(","));
    }
    if let Some(target) = &spec.target {
        cmd.arg("--target").arg(target);
    }
    for (k, v) in &spec.build_args {
        cmd.arg("--build-arg").arg(format!("{k}={v}"));
    }
    for (k, v) in &spec.labels {
        cmd.arg("--label").arg(format!("{k}={v}"));
    }
}

/// Runs the build. The builder's output goes to stderr so stdout stays
/// gantry's own (the pushed reference).
pub fn build(builder: Builder, spec: &Spec) -> Result<(), BuildError> {
    let mut cmds = commands(builder, spec);
    let cleanup = match builder {
        Builder::Buildah => cmds.pop(),
        Builder::Buildx => None,
    };
    let result = cmds.iter_mut().try_for_each(run);
    if let Some(mut clean) = cleanup {
        // Best effort: a leftover local image wastes space but breaks nothing.
        let _ = clean.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
    result
}

fn run(cmd: &mut Command) -> Result<(), BuildError> {
    let command = describe(cmd);
    tracing::info!("running {command}");
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .map_err(|source| BuildError::Spawn {
            command: command.clone(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Failed {
            command,
            status: status.to_string(),
        })
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a build learns from the git checkout it runs in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub revision: Option<String>,
    pub tags: Vec<String>,
    pub url: Option<String>,
}

/// Tags from the checkout holding `dir`: the full and short commit SHA, the
/// branch, and the version of each semver tag on HEAD (`v1.2.3` → `1.2.3`).
/// In GitHub Actions the branch comes from `GITHUB_REF` (checkouts are
/// detached there).
pub fn source(dir: &Path) -> Source {
    let Ok(repo) = git2::Repository::discover(dir) else {
        return Source::default();
    };
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return Source::default();
    };
    let sha = head.id().to_string();
    let mut tags = vec![sha.clone(), sha[..7].to_owned()];
    let branch = std::env::var("GITHUB_REF")
        .ok()
        .and_then(|r| r.strip_prefix("refs/heads/").map(str::to_owned))
        .or_else(|| {
            let head = repo.head().ok()?;
            head.is_branch()
                .then(|| head.shorthand().ok().map(str::to_owned))?
        });
    if let Some(branch) = branch.map(|b| sanitize_tag(&b)) {
        tags.push(branch);
    }
    if let Ok(names) = repo.tag_names(None) {
        for name in names.iter().flatten().flatten() {
            let on_head = repo
                .revparse_single(&format!("refs/tags/{name}"))
                .and_then(|o| o.peel_to_commit())
                .is_ok_and(|c| c.id() == head.id());
            if let Some(version) = on_head.then(|| semver(name)).flatten() {
                tags.push(version);
            }
        }
    }
    tags.retain(|t| check_tag(t).is_ok());
    tags.dedup();
    Source {
        revision: Some(sha),
        tags,
        url: source_url(&repo),
    }
}

/// `v1.2.3-rc.1` → `1.2.3-rc.1`; build metadata (`+…`) is not allowed in tags
/// and is dropped. None for anything that is not semver.
fn semver(tag: &str) -> Option<String> {
    let version = tag.strip_prefix('v').unwrap_or(tag);
    let version = version.split('+').next()?;
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let numeric = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let pre_ok = pre.is_none_or(|p| {
        p.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    });
    (numbers.len() == 3 && numbers.iter().all(numeric) && pre_ok).then(|| version.to_owned())
}

/// A branch name as a tag: `feature/x` → `feature-x`.
fn sanitize_tag(name: &str) -> String {
    let mut tag: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while tag.starts_with(['.', '-']) {
        tag.remove(0);
    }
    tag.truncate(128);
    tag
}

/// The repository's web URL for `org.opencontainers.image.source`.
fn source_url(repo: &git2::Repository) -> Option<String> {
    if let (Ok(server), Ok(name)) = (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) {
        return Some(format!("{server}/{name}"));
    }
    let remote = repo.find_remote("origin").ok()?;
    let url = remote.url().ok()?;
    let web = if let Some(rest) = url.strip_prefix("git@") {
        // git@github.com:org/repo.git
        let (host, path) = rest.split_once(':')?;
        format!("https://{host}/{path}")
    } else if url.starts_with("https://") {
        // Drop any credentials in the URL.
        let (scheme, rest) = url.split_at("https://".len());
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        format!("{scheme}{rest}")
    } else {
        return None;
    };
    Some(web.trim_end_matches(".git").to_owned())
}

/// OCI labels from the checkout; `created` honours `SOURCE_DATE_EPOCH`.
pub fn labels(source: &Source) -> Vec<(String, String)> {
    let created = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let mut labels = vec![(
        "org.opencontainers.image.created".to_owned(),
        created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )];
    if let Some(url) = &source.url {
        labels.push(("org.opencontainers.image.source".to_owned(), url.clone()));
    }
    if let Some(rev) = &source.revision {
        labels.push(("org.opencontainers.image.revision".to_owned(), rev.clone()));
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            context: "ctx".into(),
            dockerfile: "ctx/Dockerfile".into(),
            build_args: vec![("A".into(), "1".into())],
            platforms: vec!["linux/amd64".into()],
            target: Some("runtime".into()),
            labels: vec![("org.opencontainers.image.revision".into(), "abc".into())],
            output: "out.tar".into(),
            name: "k".into(),
        }
    }

    #[test]
    fn buildah_builds_then_exports_an_oci_archive() {
        let cmds: Vec<String> = commands(Builder::Buildah, &spec())
            .iter()
            .map(describe)
            .collect();
        assert_eq!(
            cmds,
            [
                "buildah build --file ctx/Dockerfile --tag localhost/gantry-build:k \
                 --platform linux/amd64 --target runtime --build-arg A=1 \
                 --label org.opencontainers.image.revision=abc \
                 --annotation org.opencontainers.image.revision=abc ctx",
                "buildah push --format oci localhost/gantry-build:k oci-archive:out.tar:k",
                "buildah rmi --force localhost/gantry-build:k",
            ]
        );
        let mut multi = spec();
        multi.platforms.push("linux/arm64".into());
        let cmds: Vec<String> = commands(Builder::Buildah, &multi)
            .iter()
            .map(describe)
            .collect();
        assert!(
            cmds[0]
                .contains("--manifest localhost/gantry-build:k --platform linux/amd64,linux/arm64")
        );
        assert!(cmds[1].starts_with("buildah manifest push --all --format oci"));
    }

    #[test]
    fn buildx_writes_an_oci_archive() {
        let cmds: Vec<String> = commands(Builder::Buildx, &spec())
            .iter()
            .map(describe)
            .collect();
        assert_eq!(
            cmds,
            [
                "docker buildx build --file ctx/Dockerfile --platform linux/amd64 --target runtime \
              --build-arg A=1 --label org.opencontainers.image.revision=abc \
              --annotation org.opencontainers.image.revision=abc \
              --output type=oci,dest=out.tar,name=k ctx"
            ]
        );
    }

    #[test]
    fn buildx_needs_a_driver_that_exports_oci() {
        assert!(buildx_driver_exports_oci(Some("docker-container")).is_ok());
        assert!(buildx_driver_exports_oci(Some("kubernetes")).is_ok());
        let err = buildx_driver_exports_oci(Some("docker")).unwrap_err();
        assert!(err.contains("docker buildx create --use"), "{err}");
        assert!(buildx_driver_exports_oci(None).is_err());
    }

    #[test]
    fn versions_from_tags() {
        assert_eq!(semver("v1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(semver("1.2.3-rc.1+build.5").as_deref(), Some("1.2.3-rc.1"));
        for not in ["v1.2", "release-1", "v1.2.x", "1.2.3-"] {
            assert_eq!(semver(not), None, "{not}");
        }
        assert_eq!(sanitize_tag("feature/new-ui"), "feature-new-ui");
        assert_eq!(sanitize_tag("-x"), "x");
    }
}
