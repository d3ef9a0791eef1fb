//! `gantry image push` against a real distribution registry and, for ECR, the
//! moto API stand-in with the registry as ECR's data plane.

use std::path::Path;
use std::process::Command;

use gantry_tests::oci::{Layer, LayoutWriter, Moto, Registry};
use gantry_tests::{Run, gantry, run};

fn layers(seed: u64) -> Vec<Layer> {
    vec![
        Layer::Random {
            size: 300_000,
            seed,
        },
        Layer::Random {
            size: 2_000_000,
            seed: seed + 1,
        },
        Layer::Bytes(format!("small layer {seed}").into_bytes()),
    ]
}

fn push(from: &str, to: &str, tags: &[&str], extra: &[&str]) -> Command {
    let mut cmd = gantry();
    cmd.args(["image", "push", "--from", from, "--to", to]);
    for tag in tags {
        cmd.arg(format!("--tag={tag}"));
    }
    cmd.args(extra);
    cmd
}

fn ok(r: Run) -> Run {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r
}

#[test]
fn pushes_a_layout_and_skips_what_the_registry_has() {
    let registry = Registry::start(None);
    let dir = tempfile::tempdir().unwrap();
    let mut layout = LayoutWriter::new(dir.path());
    let digest = layout.image("v1", &layers(1));
    let from = format!("oci:{}:v1", dir.path().display());
    let to = format!("{}/team/app", registry.host());

    let r = ok(run(&mut push(
        &from,
        &to,
        &["v1", "latest"],
        &["--insecure"],
    )));
    assert_eq!(r.stdout.trim(), format!("{to}@{digest}"));
    assert_eq!(
        registry.tag("team/app", "v1").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        registry.tag("team/app", "latest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(registry.uploads(), 4, "3 layers and the config");
    assert!(r.stderr.contains("pushed 4 blob(s)"), "{}", r.stderr);

    // The same image again: nothing is uploaded.
    let r = ok(run(&mut push(
        &from,
        &to,
        &["v1", "latest"],
        &["--insecure"],
    )));
    assert!(r.stderr.contains("nothing to push"), "{}", r.stderr);
    assert_eq!(registry.uploads(), 4);

    // A new tag for it: blobs are checked, none uploaded. In GitHub Actions
    // the step gets the digest, the pinned image and the tags as outputs.
    let outputs = dir.path().join("github-output");
    let mut cmd = push(&from, &to, &["v2"], &["--insecure"]);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs);
    let r = ok(run(&mut cmd));
    let outputs = std::fs::read_to_string(outputs).unwrap();
    assert!(outputs.contains(&format!("digest={digest}\n")), "{outputs}");
    assert!(
        outputs.contains(&format!("image={to}@{digest}\n")),
        "{outputs}"
    );
    assert!(outputs.contains(&format!("tags={to}:v2\n")), "{outputs}");
    assert!(
        r.stderr.contains("pushed 0 blob(s), 0 B; 4 already"),
        "{}",
        r.stderr
    );
    assert_eq!(registry.uploads(), 4);
    assert_eq!(
        registry.tag("team/app", "v2").as_deref(),
        Some(digest.as_str())
    );

    // A mutable tag moves to a new image that shares a layer.
    let mut next = layers(1);
    next[2] = Layer::Bytes(b"changed".to_vec());
    let digest2 = layout.image("v3", &next);
    let from2 = format!("oci:{}:v3", dir.path().display());
    ok(run(&mut push(&from2, &to, &["latest"], &["--insecure"])));
    assert_eq!(
        registry.tag("team/app", "latest").as_deref(),
        Some(digest2.as_str())
    );
    assert_eq!(
        registry.uploads(),
        5,
        "only the changed layer (same config)"
    );
}

#[test]
fn pushes_a_multi_platform_archive() {
    let registry = Registry::start(None);
    let dir = tempfile::tempdir().unwrap();
    let mut layout = LayoutWriter::new(&dir.path().join("layout"));
    let shared = Layer::Random {
        size: 100_000,
        seed: 7,
    };
    let digest = layout.multi_platform(
        "1.0.0",
        &[
            (
                "amd64",
                vec![shared.clone(), Layer::Bytes(b"amd64".to_vec())],
            ),
            ("arm64", vec![shared, Layer::Bytes(b"arm64".to_vec())]),
        ],
    );
    let archive = dir.path().join("image.tar");
    layout.archive(&archive);
    let to = format!("{}/multi", registry.host());

    // No :TAG needed when the archive holds one image.
    let r = ok(run(&mut push(
        &format!("oci-archive:{}", archive.display()),
        &to,
        &["1.0.0"],
        &["--insecure"],
    )));
    assert_eq!(r.stdout.trim(), format!("{to}@{digest}"));
    assert_eq!(
        registry.tag("multi", "1.0.0").as_deref(),
        Some(digest.as_str())
    );
    // 2 configs + shared layer + 2 arch layers.
    assert_eq!(registry.uploads(), 5);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.blob_path(&digest)).unwrap()).unwrap();
    for child in index["manifests"].as_array().unwrap() {
        let child = child["digest"].as_str().unwrap();
        let hex = child.trim_start_matches("sha256:");
        let revision = registry
            .dir
            .path()
            .join("storage/docker/registry/v2/repositories/multi/_manifests/revisions/sha256")
            .join(hex);
        assert!(revision.is_dir(), "child manifest {child} was pushed");
    }
}

#[test]
fn a_corrupt_layout_pushes_nothing_and_a_fixed_one_resumes() {
    let registry = Registry::start(None);
    let dir = tempfile::tempdir().unwrap();
    let mut layout = LayoutWriter::new(dir.path());
    let digest = layout.image("v1", &layers(3));
    let from = format!("oci:{}:v1", dir.path().display());
    let to = format!("{}/app", registry.host());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.blob_path(&digest)).unwrap()).unwrap();
    let big = manifest["layers"][1]["digest"].as_str().unwrap().to_owned();
    let big_path = layout.blob_path(&big);
    let original = std::fs::read(&big_path).unwrap();

    // A missing blob is found before anything is sent.
    std::fs::rename(&big_path, dir.path().join("moved")).unwrap();
    let r = run(&mut push(&from, &to, &["v1"], &["--insecure"]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("blob {big} is missing")),
        "{}",
        r.stderr
    );
    assert_eq!(registry.uploads(), 0);
    assert_eq!(registry.tag("app", "v1"), None);

    // Same size, one byte flipped: the upload of that blob never completes,
    // and no manifest or tag is pushed.
    let mut corrupt = original.clone();
    corrupt[1000] ^= 0xff;
    std::fs::write(&big_path, &corrupt).unwrap();
    std::fs::remove_file(dir.path().join("moved")).unwrap();
    let r = run(&mut push(
        &from,
        &to,
        &["v1"],
        &["--insecure", "--jobs", "1"],
    ));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("blob {big} is corrupt in the layout")),
        "{}",
        r.stderr
    );
    assert!(!registry.has_blob(&big));
    assert_eq!(registry.tag("app", "v1"), None);
    let uploaded_before_fix = registry.uploads();
    assert!(uploaded_before_fix >= 1, "the other blobs went up");

    // Fixed: the push resumes, sending only what the registry lacks.
    std::fs::write(&big_path, &original).unwrap();
    let r = ok(run(&mut push(&from, &to, &["v1"], &["--insecure"])));
    let sent = registry.uploads() - uploaded_before_fix;
    assert!(sent < 4, "re-sent {sent} blobs: {}", r.stderr);
    assert!(registry.has_blob(&big));
    assert_eq!(registry.tag("app", "v1").as_deref(), Some(digest.as_str()));
}

#[test]
fn bad_sources_and_tags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut layout = LayoutWriter::new(dir.path());
    layout.image("v1", &[Layer::Bytes(b"x".to_vec())]);
    layout.image("v2", &[Layer::Bytes(b"y".to_vec())]);
    let cases: [(String, &str, &str); 4] = [
        (
            format!("oci:{}", dir.path().display()),
            "v1",
            "several images; name one with :TAG (tags: v1, v2)",
        ),
        (
            format!("oci:{}:nope", dir.path().display()),
            "v1",
            "no image tagged \"nope\"",
        ),
        (
            "oci:/does/not/exist".to_owned(),
            "v1",
            "not an OCI image layout",
        ),
        (
            format!("oci:{}:v1", dir.path().display()),
            "-bad",
            "\"-bad\" is not a valid tag",
        ),
    ];
    for (from, tag, expected) in cases {
        let r = run(&mut push(&from, "127.0.0.1:9/x", &[tag], &["--insecure"]));
        assert_eq!(r.code, 1, "{from}");
        assert!(r.stderr.contains(expected), "{from}: {}", r.stderr);
    }
}

#[test]
fn registry_logins_work_and_wrong_ones_are_reported_without_the_secret() {
    let registry = Registry::start(Some(("ci", "pa55-word-xyz")));
    let dir = tempfile::tempdir().unwrap();
    let mut layout = LayoutWriter::new(dir.path());
    let digest = layout.image("v1", &[Layer::Bytes(b"auth".to_vec())]);
    let from = format!("oci:{}:v1", dir.path().display());
    let to = format!("{}/private", registry.host());

    let r = run(&mut push(&from, &to, &["v1"], &["--insecure"]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("it requires a login and none was found"),
        "{}",
        r.stderr
    );

    let mut wrong = push(&from, &to, &["v1"], &["--insecure"]);
    wrong
        .env("GANTRY_REGISTRY_USERNAME", "ci")
        .env("GANTRY_REGISTRY_PASSWORD", "not-the-pa55word");
    let r = run(&mut wrong);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("rejected the credentials"),
        "{}",
        r.stderr
    );
    assert!(!format!("{}{}", r.stdout, r.stderr).contains("not-the-pa55word"));
    assert_eq!(registry.tag("private", "v1"), None);

    // The Docker config that `docker login` writes.
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        serde_json::json!({"auths": {registry.host(): {"auth": "Y2k6cGE1NS13b3JkLXh5eg=="}}})
            .to_string(),
    )
    .unwrap();
    let r = ok(run(
        push(&from, &to, &["v1"], &["--insecure"]).env("DOCKER_CONFIG", config.path())
    ));
    assert!(!format!("{}{}", r.stdout, r.stderr).contains("pa55-word-xyz"));
    assert_eq!(
        registry.tag("private", "v1").as_deref(),
        Some(digest.as_str())
    );
}

/// moto is the ECR API; the registry, with moto's token as its password, is
/// ECR's data plane.
struct Ecr {
    moto: Moto,
    registry: Registry,
}

impl Ecr {
    fn start() -> Ecr {
        let moto = Moto::start();
        let registry = Registry::start(Some(("AWS", &moto.ecr_password())));
        Ecr { moto, registry }
    }

    fn push(&self, from: &str, to: &str, tags: &[&str], extra: &[&str]) -> Run {
        let endpoint = format!("http://{}", self.registry.host());
        let mut cmd = push(from, to, tags, &["--registry-endpoint", &endpoint]);
        cmd.args(extra);
        self.moto.env(&mut cmd);
        run(&mut cmd)
    }
}

fn image_in(dir: &Path, tag: &str, seed: u64) -> (String, String) {
    let mut layout = LayoutWriter::new(dir);
    let digest = layout.image(tag, &layers(seed));
    (format!("oci:{}:{tag}", dir.display()), digest)
}

#[test]
fn ecr_repository_is_ensured_and_pushed_to_with_its_token() {
    let ecr = Ecr::start();
    let dir = tempfile::tempdir().unwrap();
    let (from, digest) = image_in(dir.path(), "v1", 11);
    let policy = dir.path().join("lifecycle.json");
    std::fs::write(
        &policy,
        r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}"#,
    )
    .unwrap();
    let ensure = [
        "--create-repo",
        "--immutable-tags",
        "--scan-on-push",
        "--lifecycle-policy",
        policy.to_str().unwrap(),
    ];

    // A bare name is a repository in the caller's default registry.
    let r = ecr.push(&from, "team/api", &["v1"], &ensure);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let host = ecr.moto.ecr_host();
    assert_eq!(r.stdout.trim(), format!("{host}/team/api@{digest}"));
    assert!(
        r.stderr.contains("created repository team/api"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&ecr.moto.ecr_password()));
    assert_eq!(
        ecr.registry.tag("team/api", "v1").as_deref(),
        Some(digest.as_str())
    );
    let repo = ecr.moto.boto3(
        "r = c.describe_repositories(repositoryNames=['team/api'])['repositories'][0]\n\
         p = c.get_lifecycle_policy(repositoryName='team/api')['lifecyclePolicyText']\n\
         print(json.dumps([r['imageTagMutability'], r['imageScanningConfiguration']['scanOnPush'], json.loads(p)['rules'][0]['rulePriority']]))",
    );
    assert_eq!(repo, serde_json::json!(["IMMUTABLE", true, 1]));

    // Ensuring again changes nothing; the same digest under an immutable tag
    // is a no-op, by URI this time.
    let uri = format!("{host}/team/api");
    let r = ecr.push(&from, &uri, &["v1"], &ensure);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stderr.contains("created") && !r.stderr.contains("set the"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing to push"), "{}", r.stderr);

    // Another image under the immutable tag: refused before any upload,
    // naming both digests.
    let other = tempfile::tempdir().unwrap();
    let (from2, digest2) = image_in(other.path(), "v1", 99);
    let uploads = ecr.registry.uploads();
    let r = ecr.push(&from2, &uri, &["v1"], &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "tag \"v1\" of {uri} is immutable and points at {digest}; refusing to move it to {digest2}"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(ecr.registry.uploads(), uploads);
    assert_eq!(
        ecr.registry.tag("team/api", "v1").as_deref(),
        Some(digest.as_str())
    );

    // Back to mutable: now the tag may move.
    let r = ecr.push(&from2, &uri, &["v1"], &["--create-repo"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("set tag mutability to MUTABLE"),
        "{}",
        r.stderr
    );
    assert_eq!(
        ecr.registry.tag("team/api", "v1").as_deref(),
        Some(digest2.as_str())
    );
}

#[test]
fn ecr_auth_failures_are_clear_and_keep_the_token_secret() {
    let moto = Moto::start();
    // A registry that does not accept moto's token.
    let registry = Registry::start(Some(("AWS", "some-other-password")));
    let dir = tempfile::tempdir().unwrap();
    let (from, _) = image_in(dir.path(), "v1", 5);
    let endpoint = format!("http://{}", registry.host());
    let mut cmd = push(
        &from,
        &format!("{}/team/api", moto.ecr_host()),
        &["v1"],
        &["--registry-endpoint", &endpoint],
    );
    moto.env(&mut cmd);
    let r = run(&mut cmd);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("rejected the credentials"),
        "{}",
        r.stderr
    );
    assert!(!format!("{}{}", r.stdout, r.stderr).contains(&moto.ecr_password()));

    // No AWS API at all: the error says where it failed.
    let mut cmd = push(
        &from,
        "team/api",
        &["v1"],
        &["--registry-endpoint", &endpoint],
    );
    moto.env(&mut cmd);
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let r = run(&mut cmd);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot find the default ECR registry")
            && r.stderr.contains("GetAuthorizationToken"),
        "{}",
        r.stderr
    );
}

#[test]
fn transient_registry_failures_are_retried_and_persistent_ones_reported() {
    use gantry_tests::oci::{Fault, FaultProxy};
    let registry = Registry::start(None);
    let fault = |method, path, status, retry_after, times| Fault {
        method,
        path,
        status,
        retry_after,
        times,
    };
    let proxy = FaultProxy::start(
        &registry.host(),
        vec![
            fault("HEAD", "/manifests/v1", 429, Some(1), 1),
            fault("HEAD", "/blobs/sha256:", 502, None, 2),
            fault("PUT", "/blobs/uploads/", 503, None, 2),
            fault("PUT", "/manifests/v1", 500, None, 1),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let (from, digest) = image_in(dir.path(), "v1", 21);
    let to = format!("{}/flaky", proxy.host());

    let started = std::time::Instant::now();
    let r = ok(run(&mut push(&from, &to, &["v1"], &["--insecure"])));
    assert_eq!(r.stdout.trim(), format!("{to}@{digest}"));
    assert_eq!(
        registry.tag("flaky", "v1").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        proxy.injected.lock().unwrap().len(),
        6,
        "every fault was hit"
    );
    assert!(
        r.stderr.contains("429 Too Many Requests; retrying"),
        "{}",
        r.stderr
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After honoured"
    );

    // A registry that keeps failing: a bounded number of tries, then a clear error.
    let broken = FaultProxy::start(
        &registry.host(),
        vec![fault("POST", "/blobs/uploads/", 503, None, 1000)],
    );
    let to = format!("{}/down", broken.host());
    let r = run(&mut push(
        &from,
        &to,
        &["v1"],
        &["--insecure", "--retries", "2", "--jobs", "1"],
    ));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("answered 503 Service Unavailable"),
        "{}",
        r.stderr
    );
    let posts = broken.injected.lock().unwrap().len();
    assert_eq!(posts, 3, "the first try and 2 retries, then the push stops");
}
