//! `gantry image build`: real daemonless builds with buildah, pushed to a real
//! registry, and build avoidance (hit, miss) against the registry and against
//! ECR (moto as the API).

use std::path::Path;
use std::process::Command;

use gantry_tests::oci::{Moto, Registry, buildah_storage};
use gantry_tests::{Run, gantry, git, run};

/// A build context: a `FROM scratch` image with one file, and a .dockerignore.
fn context(dir: &Path, content: &str) {
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY app.txt /app.txt\n",
    )
    .unwrap();
    std::fs::write(dir.join(".dockerignore"), "*.log\n").unwrap();
    std::fs::write(dir.join("app.txt"), content).unwrap();
}

/// `gantry image build` with buildah's storage in `storage` (vfs, chroot
/// isolation: no daemon, no privileges beyond what this sandbox allows).
fn build(ctx: &Path, storage: &Path, args: &[&str]) -> Command {
    let conf = buildah_storage(storage);
    let mut cmd = gantry();
    cmd.args(["image", "build"])
        .arg(ctx)
        .args(args)
        .env("CONTAINERS_STORAGE_CONF", conf)
        .env("BUILDAH_ISOLATION", "chroot");
    cmd
}

/// The same, with no builder on PATH: proves a run did not build.
fn build_without_builder(ctx: &Path, storage: &Path, args: &[&str]) -> Command {
    let mut cmd = build(ctx, storage, args);
    cmd.env("PATH", "/nonexistent");
    cmd
}

fn ok(r: Run) -> Run {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r
}

fn digest_of(stdout: &str) -> String {
    stdout.trim().rsplit_once('@').unwrap().1.to_owned()
}

fn key_tag(stderr: &str) -> String {
    let start = stderr
        .find("gantry-build-")
        .expect("a key tag in the output");
    stderr[start..start + "gantry-build-".len() + 64].to_owned()
}

#[test]
fn builds_pushes_and_reuses_an_identical_build() {
    let registry = Registry::start(None);
    let ctx = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    context(ctx.path(), "v1");
    let to = format!("{}/web", registry.host());
    let push = ["--push", "--to", &to, "--insecure", "--no-git-tags"];

    let r = ok(run(build(ctx.path(), storage.path(), &push).arg("--tag=1")));
    let digest = digest_of(&r.stdout);
    assert!(
        r.stdout.starts_with(&format!("{to}@sha256:")),
        "{}",
        r.stdout
    );
    assert_eq!(registry.tag("web", "1").as_deref(), Some(digest.as_str()));
    let key = key_tag(&r.stderr);
    assert_eq!(registry.tag("web", &key).as_deref(), Some(digest.as_str()));
    let uploads = registry.uploads();
    assert!(uploads >= 2, "layer and config");

    // Same inputs, no builder available: the image is reused, only tagged.
    let r = ok(run(build_without_builder(
        ctx.path(),
        storage.path(),
        &push,
    )
    .arg("--tag=2")));
    assert_eq!(digest_of(&r.stdout), digest);
    assert!(r.stderr.contains("reused"), "{}", r.stderr);
    assert_eq!(registry.tag("web", "2").as_deref(), Some(digest.as_str()));
    assert_eq!(registry.uploads(), uploads, "no blob moved");

    // An ignored file changes nothing.
    std::fs::write(ctx.path().join("debug.log"), "noise").unwrap();
    let r = ok(run(build_without_builder(
        ctx.path(),
        storage.path(),
        &push,
    )
    .arg("--tag=3")));
    assert_eq!(digest_of(&r.stdout), digest);

    // A changed file is a miss: without a builder that fails clearly…
    std::fs::write(ctx.path().join("app.txt"), "v2").unwrap();
    let r = run(build_without_builder(ctx.path(), storage.path(), &push).arg("--tag=4"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no image builder found"), "{}", r.stderr);
    // …and with one, builds a new image.
    let r = ok(run(build(ctx.path(), storage.path(), &push).arg("--tag=4")));
    let digest4 = digest_of(&r.stdout);
    assert_ne!(digest4, digest);
    assert_eq!(registry.tag("web", "4").as_deref(), Some(digest4.as_str()));
    assert_ne!(key_tag(&r.stderr), key);

    // --no-reuse builds even when the registry has the inputs' image.
    let r = run(build_without_builder(ctx.path(), storage.path(), &push).arg("--no-reuse"));
    assert!(r.stderr.contains("no image builder found"), "{}", r.stderr);
}

#[test]
fn tags_and_labels_come_from_git() {
    let registry = Registry::start(None);
    let ctx = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    context(ctx.path(), "tagged");
    git(ctx.path(), &["init", "-q", "-b", "release/2.x"]);
    git(ctx.path(), &["add", "."]);
    git(ctx.path(), &["commit", "-qm", "app"]);
    git(ctx.path(), &["tag", "v2.4.0"]);
    git(
        ctx.path(),
        &["remote", "add", "origin", "git@github.com:acme/web.git"],
    );
    let sha = git(ctx.path(), &["rev-parse", "HEAD"]);
    let to = format!("{}/web", registry.host());

    let mut cmd = build(
        ctx.path(),
        storage.path(),
        &["--push", "--to", &to, "--insecure"],
    );
    cmd.env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("GITHUB_REF")
        .env_remove("GITHUB_SERVER_URL")
        .env_remove("GITHUB_REPOSITORY");
    let r = ok(run(&mut cmd));
    let digest = digest_of(&r.stdout);
    for tag in [sha.as_str(), &sha[..7], "release-2.x", "2.4.0"] {
        assert_eq!(
            registry.tag("web", tag).as_deref(),
            Some(digest.as_str()),
            "{tag}"
        );
    }

    let blob = |digest: &str| -> serde_json::Value {
        let hex = digest.trim_start_matches("sha256:");
        let path = registry.dir.path().join(format!(
            "storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let manifest = blob(&digest);
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], sha.as_str());
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/acme/web"
    );
    assert_eq!(
        labels["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.revision"],
        sha.as_str()
    );
}

#[test]
fn builds_to_an_archive_without_pushing() {
    let ctx = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    context(ctx.path(), "local");
    let out = ctx.path().join("image.tar");
    ok(run(build(
        ctx.path(),
        storage.path(),
        &["--no-git-tags", "--output"],
    )
    .arg(&out)));
    let listing = Command::new("tar").arg("tf").arg(&out).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("index.json") && listing.contains("blobs/sha256/"),
        "{listing}"
    );

    let r = run(gantry().args(["image", "build"]).arg(ctx.path()));
    assert_eq!(r.code, 2, "neither --output nor --push: {}", r.stderr);
    let r = run(gantry().args(["image", "build", "/no/such/dir", "--output", "x.tar"]));
    assert!(
        r.stderr
            .contains("/no/such/dir/Dockerfile: no such Dockerfile"),
        "{}",
        r.stderr
    );
}

#[test]
fn ecr_build_avoidance_retags_through_the_api() {
    let moto = Moto::start();
    let registry = Registry::start(Some(("AWS", &moto.ecr_password())));
    let ctx = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    context(ctx.path(), "ecr");
    let to = format!("{}/svc", moto.ecr_host());
    let endpoint = format!("http://{}", registry.host());
    let args = [
        "--push",
        "--to",
        &to,
        "--registry-endpoint",
        &endpoint,
        "--create-repo",
        "--no-git-tags",
    ];

    let mut first = build(ctx.path(), storage.path(), &args);
    first.arg("--tag=v1");
    moto.env(&mut first);
    let r = ok(run(&mut first));
    let digest = digest_of(&r.stdout);
    let key = key_tag(&r.stderr);

    moto.mirror(&registry, "us-east-1", "svc", &key, &digest);
    let manifest = registry.manifest(&digest);

    let uploads = registry.uploads();
    let mut again = build_without_builder(ctx.path(), storage.path(), &args);
    again.arg("--tag=v2");
    moto.env(&mut again);
    let r = ok(run(&mut again));
    assert_eq!(digest_of(&r.stdout), digest);
    assert!(r.stderr.contains("reused"), "{}", r.stderr);
    assert_eq!(registry.uploads(), uploads);
    let v2 = moto.boto3(
        "i = c.batch_get_image(repositoryName='svc', imageIds=[{'imageTag': 'v2'}])['images'][0]\n\
         print(json.dumps(i['imageManifest']))",
    );
    assert_eq!(v2.as_str(), Some(manifest.as_str()));
}
