//! The workflows under `.github/`, unchanged, executed by an Actions runner
//! (`act`, on this host, offline) in a repository made for each test: this
//! checkout's `.github/` and `manifests/example/`, and the two example
//! images' contexts as `FROM scratch` builds (no base image can be pulled
//! here). Around it: the distribution registry standing in for ECR's data
//! plane, moto for the ECR and STS APIs, a bare repository as `origin`, the
//! fake GitHub API for pull requests. Remote actions are the stand-ins under
//! `tests/actions/`. Skipped, saying so, only where act is not installed.

use std::path::{Path, PathBuf};

use gantry_tests::act::{Act, Job};
use gantry_tests::github::{FakeGitHub, NAME, OWNER, TOKEN};
use gantry_tests::oci::{Moto, Registry, buildah_storage};
use gantry_tests::{git, git_raw, repo};

const ECR: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const STAGING: &str = "manifests/example/overlays/staging/kustomization.yaml";
const PROD: &str = "manifests/example/overlays/prod/kustomization.yaml";

/// The repository the workflows run in: a bare `origin` and a clone at its
/// `main`, where act runs.
struct Project {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("origin.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        git(dir.path(), &["clone", "-q", "origin.git", "work"]);
        // act names the repository after this remote (`--remote-name github`).
        let github = format!("https://github.com/{OWNER}/{NAME}.git");
        git(&work, &["remote", "add", "github", &github]);
        for path in [".github", "manifests/example"] {
            copy_tree(&repo().join(path), &work.join(path));
        }
        let image = |name: &str, file: &str, text: &str| {
            let ctx = work.join("examples").join(name);
            std::fs::create_dir_all(&ctx).unwrap();
            std::fs::write(ctx.join(file), text).unwrap();
            std::fs::write(
                ctx.join("Dockerfile"),
                format!("FROM scratch\nCOPY {file} /{file}\n"),
            )
            .unwrap();
        };
        image("frontend", "index.html", "<h1>webapp</h1>\n");
        image("backend", "version.txt", "backend 1.5.0\n");
        let project = Project {
            _dir: dir,
            bare,
            work,
        };
        project.commit("Add the webapp");
        project
    }

    /// Commits everything in the clone and pushes it: the push event.
    fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// The clone at the remote's tip (what the next checkout sees).
    fn pull(&self) {
        git(&self.work, &["pull", "-q", "--ff-only", "origin", "main"]);
    }

    fn remote_head(&self, branch: &str) -> String {
        git(&self.bare, &["rev-parse", branch])
    }

    fn remote_file(&self, rev: &str, path: &str) -> String {
        git_raw(&self.bare, &["show", &format!("{rev}:{path}")])
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn succeeded(job: &Job) {
    assert!(job.ok, "the job failed:\n{}", job.text());
}

/// ECR as release.yml reaches it: moto answers the ECR and STS APIs (the
/// credentials stand-in assumes the role there), the registry takes moto's
/// tokens, buildah keeps its storage in the test's directory.
struct Aws {
    moto: Moto,
    registry: Registry,
    _storage: tempfile::TempDir,
    storage_conf: PathBuf,
}

impl Aws {
    fn start() -> Aws {
        let moto = Moto::start();
        let registry = Registry::start(Some(("AWS", &moto.ecr_password())));
        let storage = tempfile::tempdir().unwrap();
        let storage_conf = buildah_storage(storage.path());
        Aws {
            moto,
            registry,
            _storage: storage,
            storage_conf,
        }
    }

    /// What the runner's environment and the repository's settings give the
    /// workflow: endpoints (a runner in a network with its own), the role's
    /// ARN (`vars.AWS_RELEASE_ROLE_ARN`), the token (`-s GITHUB_TOKEN`, read
    /// from act's environment).
    fn runner_args(&self) -> Vec<String> {
        [
            format!("AWS_ENDPOINT_URL={}", self.moto.endpoint()),
            format!("GANTRY_REGISTRY_ENDPOINT=http://{}", self.registry.host()),
            format!("CONTAINERS_STORAGE_CONF={}", self.storage_conf.display()),
            "BUILDAH_ISOLATION=chroot".into(),
        ]
        .into_iter()
        .flat_map(|e| ["--env".to_string(), e])
        .chain([
            "--var".into(),
            "AWS_RELEASE_ROLE_ARN=arn:aws:iam::123456789012:role/release".into(),
            "-s".into(),
            "GITHUB_TOKEN".into(),
        ])
        .collect()
    }

    /// What real ECR would know after a push: the tags the registry holds,
    /// in the ECR API too.
    fn mirror(&self, tags: &str, digest: &str) {
        for tag in tags.lines() {
            let (repo, tag) = tag.split_once('/').unwrap().1.rsplit_once(':').unwrap();
            self.moto
                .mirror(&self.registry, "eu-west-1", repo, tag, digest);
        }
    }
}

/// release.yml on a push to main.
fn release(act: &Act, project: &Project, aws: &Aws) -> Job {
    act.seed_gantry(&project.work);
    act.run(
        &project.work,
        "push",
        ".github/workflows/release.yml",
        &aws.runner_args(),
        &[("GITHUB_TOKEN", TOKEN)],
    )
}

/// The staging overlay's `images:` entry for `name`, as pushed.
fn staged(project: &Project, name: &str) -> String {
    let file = project.remote_file("main", STAGING);
    let start = file
        .find(&format!("- name: {name}\n"))
        .unwrap_or_else(|| panic!("{name} not in {STAGING}:\n{file}"));
    file[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("- "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn release_builds_pushes_and_deploys_to_staging_then_reuses_the_images() {
    let Some(act) = Act::find() else { return };
    let project = Project::new();
    let aws = Aws::start();

    let sha = git(&project.work, &["rev-parse", "HEAD"]);
    let job = release(&act, &project, &aws);
    succeeded(&job);
    let (mut digests, mut pushed) = (Vec::new(), Vec::new());
    for name in ["frontend", "backend"] {
        let out = job.outputs(name);
        let digest = job.output(name, "digest");
        assert_eq!(out["image"], format!("{ECR}/webapp/{name}@{digest}"));
        // The commit's tag, and the build key's that finds it next time.
        let tags: Vec<&str> = out["tags"].lines().collect();
        assert_eq!(tags[0], format!("{ECR}/webapp/{name}:{sha}"));
        assert!(tags[1].starts_with(&format!("{ECR}/webapp/{name}:gantry-build-")));
        pushed.push(out["tags"].clone());
        assert_eq!(out["reused"], "false", "first build of {name}");
        assert_eq!(
            aws.registry.tag(&format!("webapp/{name}"), &sha).as_deref(),
            Some(digest.as_str())
        );
        // Tag for people, digest for the cluster.
        let entry = staged(&project, name);
        assert!(
            entry.contains(&format!("newTag: {sha}"))
                || entry.contains(&format!("newTag: \"{sha}\"")),
            "{entry}"
        );
        assert!(entry.contains(&format!("digest: {digest}")), "{entry}");
        digests.push(digest);
    }
    let commit = project.remote_head("main");
    assert_eq!(job.output("bump", "changed"), "true");
    assert_eq!(job.output("bump", "commit"), commit);
    assert_eq!(job.output("bump", "files"), STAGING);
    let message = git(
        &project.bare,
        &["log", "-1", "--format=%an <%ae>%n%B", "main"],
    );
    assert!(
        message.starts_with(&format!(
            "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>\nstaging: deploy {}",
            &sha[..12]
        )),
        "{message}"
    );
    assert!(
        job.text()
            .contains(&format!("staging now runs {sha} (commit {commit})")),
        "{}",
        job.text()
    );
    let summary = job.summary();
    assert!(
        summary.contains(STAGING) && summary.contains(&digests[1]),
        "{summary}"
    );
    let uploads = aws.registry.uploads();
    for (tags, digest) in pushed.iter().zip(&digests) {
        aws.mirror(tags, digest);
    }

    // The next push to main: same image inputs, so both images are reused
    // (retagged through the ECR API, nothing built or uploaded) and staging
    // moves to the new commit's tag, same digests.
    project.pull();
    std::fs::write(
        project.work.join("CHANGES.txt"),
        "a change outside the images\n",
    )
    .unwrap();
    let sha2 = project.commit("Note a change");
    let job = release(&act, &project, &aws);
    succeeded(&job);
    for (name, digest) in ["frontend", "backend"].into_iter().zip(&digests) {
        assert_eq!(job.output(name, "reused"), "true", "{}", job.text());
        assert_eq!(&job.output(name, "digest"), digest);
        assert_eq!(
            aws.moto
                .tag_manifest("eu-west-1", &format!("webapp/{name}"), &sha2),
            Some(aws.registry.manifest(digest)),
            "{name}:{sha2} is the same image"
        );
        let entry = staged(&project, name);
        assert!(
            entry.contains(&sha2) && entry.contains(digest.as_str()),
            "{entry}"
        );
    }
    assert_eq!(
        aws.registry.uploads(),
        uploads,
        "a reused image uploads nothing"
    );
    assert_eq!(job.output("bump", "changed"), "true");
    assert_eq!(job.output("bump", "commit"), project.remote_head("main"));
}

/// promote.yml, dispatched with its `images` input, against the fake
/// GitHub API (whose git data is `origin`).
fn promote(act: &Act, project: &Project, github: &FakeGitHub, images: &str) -> Job {
    act.seed_gantry(&project.work);
    let args = [
        "--input".to_string(),
        format!("images={images}"),
        "--env".into(),
        format!("GITHUB_API_URL={}", github.url()),
        "-s".into(),
        "GITHUB_TOKEN".into(),
    ];
    act.run(
        &project.work,
        "workflow_dispatch",
        ".github/workflows/promote.yml",
        &args,
        &[("GITHUB_TOKEN", TOKEN)],
    )
}

#[test]
fn promote_opens_a_pull_request_for_prod_then_updates_it() {
    let Some(act) = Act::find() else { return };
    let project = Project::new();
    let github = FakeGitHub::start(&project.bare);

    let job = promote(&act, &project, &github, "backend");
    succeeded(&job);
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let pr = &pulls[0];
    assert!(pr.open && pr.base == "main", "{pr:?}");
    assert_eq!(pr.labels, ["promotion"]);
    assert!(
        pr.title
            .starts_with("Promote staging to prod (backend 1.4.0"),
        "{}",
        pr.title
    );
    assert_eq!(job.output("promote", "pull-request-number"), "1");
    assert_eq!(job.output("promote", "pull-request-branch"), pr.head);
    assert_eq!(
        job.output("promote", "commit"),
        project.remote_head(&pr.head)
    );
    // Only the image asked for; the rest of prod's file as it was.
    let before = std::fs::read_to_string(project.work.join(PROD)).unwrap();
    let after = project.remote_file(&pr.head, PROD);
    let backend = "  - name: backend\n    newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/backend\n    newTag: ";
    assert!(after.contains(&format!("{backend}\"1.4.0\"")), "{after}");
    assert_eq!(
        after.replace(
            &format!("{backend}\"1.4.0\""),
            &format!("{backend}\"1.3.2\"")
        ),
        before
    );
    // Committed through the API (GitHub signs it), not pushed by the job.
    assert!(
        github
            .requests()
            .iter()
            .any(|r| r.path == "/graphql" && r.operation() == Some("GantryCommit")),
        "no API commit"
    );

    // Run again: the open pull request is the one updated.
    let job = promote(&act, &project, &github, "backend");
    succeeded(&job);
    assert_eq!(job.output("promote", "pull-request-number"), "1");
    assert_eq!(github.pulls().len(), 1);
}

#[test]
fn the_composite_action_runs_each_command_and_passes_its_outputs_on() {
    let Some(act) = Act::find() else { return };
    let project = Project::new();
    let workflow = ".github/workflows/composite-action.yml";
    std::fs::copy(
        repo().join("tests/workflows/composite-action.yml"),
        project.work.join(workflow),
    )
    .unwrap();
    let sha = project.commit("Test the action");
    let aws = Aws::start();
    let github = FakeGitHub::start(&project.bare);
    act.seed_gantry(&project.work);
    let mut args = aws.runner_args();
    args.extend(["--env".into(), format!("GITHUB_API_URL={}", github.url())]);
    let job = act.run(
        &project.work,
        "push",
        workflow,
        &args,
        &[("GITHUB_TOKEN", TOKEN)],
    );
    succeeded(&job);

    let version = gantry_tests::run(gantry_tests::gantry().arg("--version")).stdout;
    assert_eq!(job.output("on-path", "version"), version.trim());
    assert!(
        job.output("archive", "archive").ends_with("/backend.tar"),
        "{}",
        job.text()
    );
    let repo_uri = format!("{ECR}/team/backend");
    let digest = job.output("push", "digest");
    assert_eq!(job.output("push", "image"), format!("{repo_uri}@{digest}"));
    assert_eq!(job.output("push", "tags"), format!("{repo_uri}:archived"));
    assert_eq!(
        aws.registry.tag("team/backend", "archived").as_deref(),
        Some(digest.as_str())
    );
    let built = job.output("backend", "image");
    assert!(built.starts_with(&format!("{repo_uri}@sha256:")), "{built}");
    assert_eq!(job.output("backend", "reused"), "false");
    assert!(
        job.output("backend", "tags")
            .lines()
            .any(|t| t == format!("{repo_uri}:{sha}"))
    );

    let commit = project.remote_head("main");
    assert_eq!(job.output("bump", "changed"), "true");
    assert_eq!(job.output("bump", "commit"), commit);
    assert_eq!(
        job.output("bump", "files"),
        "overlays/staging/kustomization.yaml"
    );
    assert_eq!(job.output("deployed", "commit"), commit);
    assert!(staged(&project, "backend").contains(built.rsplit_once('@').unwrap().1));

    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(job.output("promote", "pull-request-number"), "1");
    assert_eq!(job.output("promote", "pull-request-branch"), pulls[0].head);
    assert!(
        job.output("promote", "pull-request-url")
            .ends_with("/pull/1")
    );
    let prod = project.remote_file(&pulls[0].head, PROD);
    assert!(prod.contains(&format!("newName: {repo_uri}")), "{prod}");
}
