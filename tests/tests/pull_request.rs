//! `gantry bump --pr` and `--commit-via api` against the fake GitHub (REST
//! and GraphQL, backed by the same bare repository the git pushes reach):
//! the requests GitHub documents, the pull requests' life cycle, and the
//! errors users see.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gantry_tests::github::{App, FakeGitHub, Fault, NAME, OWNER, TOKEN};
use gantry_tests::{Remote, Run, gantry, git, run};
use serde_json::{Value, json};

const PROD: &str = "overlays/prod/kustomization.yaml";
const K: &str = "resources:
  - ../../base
images:
  - name: backend
    newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/backend
    newTag: \"1.3.2\"
  - name: frontend
    newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/frontend
    newTag: \"1.3.2\"
";

struct Setup {
    remote: Remote,
    clone: PathBuf,
    gh: FakeGitHub,
}

fn setup() -> Setup {
    let remote = Remote::new(&[(PROD, K), ("README.md", "gitops\n")]);
    let clone = remote.clone_as("work", &remote.file_url());
    let gh = FakeGitHub::start(&remote.bare);
    Setup { remote, clone, gh }
}

impl Setup {
    fn gantry(&self, args: &[&str]) -> Command {
        let mut cmd = gantry();
        cmd.current_dir(&self.clone)
            .env("GITHUB_TOKEN", TOKEN)
            .args(["bump", "-f", PROD])
            .args(args)
            // As in GitHub Actions; the file:// remote names no repository.
            .env("GITHUB_API_URL", self.gh.url())
            .env("GITHUB_REPOSITORY", "acme/gitops");
        cmd
    }

    fn bump(&self, args: &[&str]) -> Run {
        run(&mut self.gantry(args))
    }

    fn branch(&self, name: &str) -> Option<String> {
        let out = Command::new("git")
            .args(["rev-parse", "--verify", "-q", &format!("refs/heads/{name}")])
            .current_dir(&self.remote.bare)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn show(&self, rev: &str, path: &str) -> String {
        git(&self.remote.bare, &["show", &format!("{rev}:{path}")])
    }

    /// Another pipeline's commit on main.
    fn advance_main(&self, file: &str, text: &str) -> String {
        let other = self
            .remote
            .dir
            .path()
            .join(format!("other-{}", file.replace('/', "-")));
        git(
            self.remote.dir.path(),
            &[
                "clone",
                "-q",
                self.remote.bare.to_str().unwrap(),
                other.to_str().unwrap(),
            ],
        );
        std::fs::write(other.join(file), text).unwrap();
        git(&other, &["commit", "-qam", &format!("change {file}")]);
        git(&other, &["push", "-q", "origin", "main"]);
        git(&other, &["rev-parse", "HEAD"])
    }

    /// The local clone is exactly as it was: same HEAD, clean tree.
    fn assert_clone_untouched(&self, head: &str) {
        assert_eq!(git(&self.clone, &["rev-parse", "HEAD"]), head);
        assert_eq!(git(&self.clone, &["status", "--porcelain"]), "");
        assert_eq!(std::fs::read_to_string(self.clone.join(PROD)).unwrap(), K);
    }
}

/// GitHub answers `status` with `body` to the next `method` request on a
/// path ending in `path`.
fn fault(method: &'static str, path: &str, status: u16, body: Value) -> Fault {
    Fault {
        method,
        path_ends_with: path.into(),
        status,
        headers: vec![],
        body,
        times: 1,
    }
}

/// The run failed with `message` in its error.
fn fails_with(r: &Run, message: &str) {
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains(message),
        "{message:?} not in: {}",
        r.stderr
    );
}

fn bodies<'a>(
    reqs: &'a [gantry_tests::github::Request],
    method: &str,
    path: &str,
) -> Vec<&'a Value> {
    reqs.iter()
        .filter(|r| r.method == method && r.path == path)
        .map(|r| &r.body)
        .collect()
}

fn graphql_calls(reqs: &[gantry_tests::github::Request], op: &str) -> Vec<Value> {
    reqs.iter()
        .filter(|r| r.path == "/graphql" && r.operation() == Some(op))
        .map(|r| r.body["variables"].clone())
        .collect()
}

/// The step outputs written, each declared by the composite action.
fn assert_outputs_declared(outputs: &std::path::Path) {
    let written = std::fs::read_to_string(outputs).unwrap();
    for line in [
        "pull-request-number=1",
        "pull-request-url=https://github.example/acme/gitops/pull/1",
        "pull-request-branch=gantry/overlays-prod/backend",
        "changed=true",
    ] {
        assert!(written.lines().any(|l| l == line), "{line} in {written}");
    }
    let action: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(gantry_tests::repo().join(".github/actions/gantry/action.yml"))
            .unwrap(),
    )
    .unwrap();
    for key in written
        .lines()
        .filter_map(|l| l.split_once(['=', '<']).map(|(k, _)| k))
    {
        assert!(
            action["outputs"].get(key).is_some(),
            "action.yml declares {key}"
        );
    }
}

/// The documented request shapes of opening a pull request on `branch`.
fn assert_documented_requests(reqs: &[gantry_tests::github::Request], branch: &str) {
    for r in reqs {
        assert_eq!(
            r.authorization,
            format!("Bearer {TOKEN}"),
            "{} {}",
            r.method,
            r.path
        );
        assert_eq!(r.api_version, "2022-11-28", "{} {}", r.method, r.path);
    }
    let lookups: Vec<&str> = reqs
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/repos/acme/gitops/pulls")
        .map(|r| r.query.as_str())
        .collect();
    assert!(
        lookups[0].contains("state=open")
            && lookups[0].contains("base=main")
            && lookups[0].contains("head=acme%3Agantry%2Foverlays-prod%2Fbackend"),
        "{lookups:?}"
    );
    let created = bodies(reqs, "POST", "/repos/acme/gitops/pulls");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["head"], branch);
    assert_eq!(created[0]["base"], "main");
    assert_eq!(created[0]["draft"], true);
    assert_eq!(created[0]["title"], "Bump backend to 1.5.0");
    assert_eq!(
        *bodies(reqs, "POST", "/repos/acme/gitops/issues/1/labels")[0],
        json!({ "labels": ["deploy", "prod"] })
    );
    assert_eq!(
        *bodies(
            reqs,
            "POST",
            "/repos/acme/gitops/pulls/1/requested_reviewers"
        )[0],
        json!({ "reviewers": ["alice"], "team_reviewers": ["sre"] })
    );
    assert_eq!(
        graphql_calls(reqs, "GantryAutoMerge"),
        [json!({ "pr": "PR_node1", "method": "SQUASH" })]
    );
}

#[test]
fn a_pull_request_is_opened_then_updated_on_the_current_base() {
    let s = setup();
    let head = git(&s.clone, &["rev-parse", "HEAD"]);
    let main_before = s.branch("main").unwrap();
    let outputs = s.remote.dir.path().join("github-output");
    let r = run(s
        .gantry(&[
        "-i",
        "backend=*:1.5.0@sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "--pr",
        "--label",
        "deploy",
        "--label",
        "prod",
        "--reviewer",
        "alice",
        "--reviewer",
        "acme/sre",
        "--draft",
        "--auto-merge",
    ])
        .env("GITHUB_OUTPUT", &outputs));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("opened pull request #1: https://github.example/acme/gitops/pull/1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("auto-merge (squash) enabled"),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains(TOKEN) && !r.stdout.contains(TOKEN));
    assert_outputs_declared(&outputs);

    // The branch holds one commit on main's tip; main and the clone are untouched.
    let branch = "gantry/overlays-prod/backend";
    let tip = s
        .branch(branch)
        .expect("the pull request's branch was pushed");
    assert_eq!(
        git(&s.remote.bare, &["rev-parse", &format!("{tip}^")]),
        main_before
    );
    assert_eq!(s.branch("main").unwrap(), main_before);
    let bumped = s.show(branch, PROD);
    assert_eq!(
        bumped,
        K.replacen("newTag: \"1.3.2\"", "newTag: \"1.5.0\"\n    digest: sha256:1111111111111111111111111111111111111111111111111111111111111111", 1)
            .trim_end()
    );
    s.assert_clone_untouched(&head);

    let pr = &s.gh.pulls()[0];
    assert_eq!((pr.head.as_str(), pr.base.as_str()), (branch, "main"));
    assert_eq!(pr.title, "Bump backend to 1.5.0");
    assert!(pr.draft);
    assert_eq!(pr.labels, ["deploy", "prod"]);
    assert_eq!(pr.reviewers, ["alice"]);
    assert_eq!(pr.team_reviewers, ["sre"]);
    assert_eq!(pr.auto_merge.as_deref(), Some("SQUASH"));
    assert!(pr.body.contains(
        "| `overlays/prod/kustomization.yaml` | `backend` | `123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/backend:1.3.2` | [`123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/backend:1.5.0@sha256:1111"
    ), "{}", pr.body);
    assert!(pr.body.contains("(https://eu-west-1.console.aws.amazon.com/ecr/repositories/private/123456789012/webapp/backend/_/image/sha256:1111"), "{}", pr.body);

    assert_documented_requests(&s.gh.requests(), branch);

    // Main moves on; a newer bump of the same image updates the same pull
    // request, rebuilt on the new tip.
    let new_main = s.advance_main("README.md", "gitops, moved on\n");
    let r = s.bump(&["-i", "backend=*:1.6.0", "--pr", "--auto-merge=rebase"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("updated pull request #1"), "{}", r.stdout);
    let tip = s.branch(branch).unwrap();
    assert_eq!(
        git(&s.remote.bare, &["rev-parse", &format!("{tip}^")]),
        new_main
    );
    assert!(s.show(branch, PROD).contains("newTag: \"1.6.0\""));
    assert_eq!(s.show(branch, "README.md"), "gitops, moved on");
    let pulls = s.gh.pulls();
    assert_eq!(pulls.len(), 1, "no duplicate");
    assert_eq!(pulls[0].title, "Bump backend to 1.6.0");
    assert!(pulls[0].body.contains("backend:1.6.0"));
    assert_eq!(pulls[0].auto_merge.as_deref(), Some("REBASE"));
    let reqs = s.gh.requests();
    assert_eq!(bodies(&reqs, "POST", "/repos/acme/gitops/pulls").len(), 1);
    let edited = bodies(&reqs, "PATCH", "/repos/acme/gitops/pulls/1");
    assert_eq!(edited[0]["title"], "Bump backend to 1.6.0");

    // The same bump again: the branch already holds it, nothing is pushed.
    let r = s.bump(&["-i", "backend=*:1.6.0", "--pr"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        s.branch(branch).unwrap(),
        tip,
        "an identical bump is not pushed again"
    );

    // Main gets the bump some other way: the pull request is closed.
    s.advance_main(PROD, &s.show(branch, PROD));
    let r = s.bump(&["-i", "backend=*:1.6.0", "--pr"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("main already carries this bump; closed #1"),
        "{}",
        r.stdout
    );
    assert!(!s.gh.pulls()[0].open);
}

#[test]
fn a_newer_bump_supersedes_the_pull_requests_it_covers() {
    let s = setup();
    let versioned = ["--pr", "--pr-branch", "deploy/{images}-{versions}"];
    let r = s.bump(&[&["-i", "backend=*:1.5.0"], &versioned[..]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = s.bump(&[&["-i", "frontend=*:2.0.0"], &versioned[..]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let by_hand =
        s.gh.add_pull("someone/else", "main", "Hand-made", "no marker here");
    assert!(s.branch("deploy/backend-1.5.0").is_some());

    let r = s.bump(&[&["-i", "backend=*:1.6.0"], &versioned[..]].concat());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("opened pull request #4"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("closed pull request #1 (superseded by #4)"),
        "{}",
        r.stdout
    );
    let pulls = s.gh.pulls();
    assert!(!pulls[0].open);
    assert_eq!(pulls[0].comments, ["Superseded by #4."]);
    assert!(pulls[1].open, "the frontend bump is not covered");
    assert!(
        pulls[by_hand as usize - 1].open,
        "a pull request gantry did not open is left alone"
    );
    assert!(
        s.branch("deploy/backend-1.5.0").is_none(),
        "its branch is deleted"
    );
    let reqs = s.gh.requests();
    assert_eq!(
        *bodies(&reqs, "PATCH", "/repos/acme/gitops/pulls/1")[0],
        json!({ "state": "closed" })
    );
    assert_eq!(
        reqs.iter()
            .filter(|r| r.method == "DELETE")
            .map(|r| r.path.as_str())
            .collect::<Vec<_>>(),
        ["/repos/acme/gitops/git/refs/heads/deploy/backend-1.5.0"]
    );
}

#[test]
fn a_duplicate_from_a_concurrent_run_is_updated_instead() {
    let s = setup();
    // Another pipeline opens the pull request between our look and our create.
    let first = s.bump(&["-i", "backend=*:1.5.0", "--pr"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    s.gh.state()
        .faults
        .push_back(fault("GET", "/pulls", 200, json!([])));
    let r = s.bump(&["-i", "backend=*:1.5.1", "--pr"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("updated pull request #1"), "{}", r.stdout);
    let pulls = s.gh.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].title, "Bump backend to 1.5.1");
    assert_eq!(
        bodies(&s.gh.requests(), "POST", "/repos/acme/gitops/pulls").len(),
        2
    );
}

#[test]
fn a_secondary_rate_limit_is_waited_out() {
    let s = setup();
    let limit = json!({
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
    });
    s.gh.state().faults.push_back(Fault {
        headers: vec![("retry-after", "1".into())],
        ..fault("POST", "/pulls", 403, limit)
    });
    let start = Instant::now();
    let r = s.bump(&["-i", "backend=*:1.5.0", "--pr"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "retry-after is honoured"
    );
    assert!(
        r.stderr
            .contains("GitHub rate limit: waiting before retrying"),
        "{}",
        r.stderr
    );
    assert_eq!(
        bodies(&s.gh.requests(), "POST", "/repos/acme/gitops/pulls").len(),
        2
    );
    assert_eq!(s.gh.pulls().len(), 1);

    // A limit that does not lift: a clear error after the retries, nothing half-done locally.
    s.gh.state().faults.push_back(Fault {
        headers: vec![("retry-after", "0".into())],
        times: 10,
        ..fault(
            "PATCH",
            "/pulls/1",
            429,
            json!({ "message": "API rate limit exceeded" }),
        )
    });
    let head = git(&s.clone, &["rev-parse", "HEAD"]);
    let r = s.bump(&["-i", "backend=*:1.5.1", "--pr"]);
    fails_with(
        &r,
        "update pull request #1: GitHub's rate limit still held after waiting and retrying (429 API rate limit exceeded)",
    );
    s.assert_clone_untouched(&head);
}

#[test]
fn github_errors_say_what_to_do_and_leave_everything_clean() {
    let s = setup();
    let head = git(&s.clone, &["rev-parse", "HEAD"]);

    let r = run(s
        .gantry(&["-i", "backend=*:1.5.0", "--pr"])
        .env("GITHUB_TOKEN", "ghp_wrong_secret"));
    fails_with(
        &r,
        "GitHub rejected the credentials (401 Bad credentials); set GITHUB_TOKEN or GH_TOKEN",
    );
    assert!(!r.stderr.contains("ghp_wrong_secret"));
    assert!(
        s.branch("gantry/overlays-prod/backend").is_none(),
        "nothing pushed before GitHub said yes"
    );

    let r = run(s
        .gantry(&["-i", "backend=*:1.5.0", "--pr"])
        .env_remove("GITHUB_TOKEN"));
    fails_with(&r, "no GitHub credentials: set GITHUB_TOKEN or GH_TOKEN");

    let r = run(&mut s.gantry(&[
        "-i",
        "backend=*:1.5.0",
        "--pr",
        "--github-repo",
        "acme/missing",
    ]));
    fails_with(
        &r,
        "not found (404 Not Found); acme/missing does not exist, or the token cannot see it",
    );

    s.gh.state().faults.push_back(fault(
        "POST",
        "/pulls",
        403,
        json!({ "message": "Resource not accessible by integration" }),
    ));
    let r = s.bump(&["-i", "backend=*:1.5.0", "--pr"]);
    fails_with(
        &r,
        "open a pull request from gantry/overlays-prod/backend into main: GitHub refused (403 Resource not accessible by integration); the token needs contents: write and pull-requests: write on acme/gitops",
    );

    s.gh.state().faults.push_back(fault(
        "POST",
        "/requested_reviewers",
        422,
        json!({ "message": "Reviews may only be requested from collaborators. One or more of the users or teams you specified is not a collaborator of the acme/gitops repository." }),
    ));
    let r = s.bump(&["-i", "backend=*:1.5.0", "--pr", "--reviewer", "mallory"]);
    fails_with(
        &r,
        "request reviews on pull request #1: GitHub could not process the request (422 Reviews may only be requested from collaborators.",
    );
    s.assert_clone_untouched(&head);
}

#[test]
fn a_github_app_exchanges_its_jwt_for_an_installation_token() {
    let s = setup();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("app.pem");
    let public = keys.path().join("app.pub.pem");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl on PATH");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // GitHub hands out PKCS#1 keys.
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        key.to_str().unwrap(),
        "2048",
    ]);
    openssl(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    s.gh.state().app = Some(App {
        id: 4242,
        public_pem: std::fs::read_to_string(&public).unwrap(),
        installation: 99,
        token: "ghs_installation_token".into(),
    });
    let r = run(s
        .gantry(&[
            "-i",
            "backend=*:1.5.0",
            "--pr",
            "--github-app-id",
            "4242",
            "--github-app-key",
        ])
        .arg(&key)
        .env_remove("GITHUB_TOKEN"));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        !r.stderr.contains("ghs_installation_token")
            && !r.stdout.contains("ghs_installation_token")
    );
    let reqs = s.gh.requests();
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/repos/acme/gitops/installation");
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(reqs[1].path, "/app/installations/99/access_tokens");
    for r in &reqs[..2] {
        let jwt = r.authorization.strip_prefix("Bearer ").unwrap();
        assert_eq!(
            jwt.split('.').count(),
            3,
            "a JWT, verified by the fake: {jwt}"
        );
    }
    assert!(
        reqs[2..]
            .iter()
            .all(|r| r.authorization == "Bearer ghs_installation_token")
    );
    assert_eq!(s.gh.pulls().len(), 1);

    // A key for another App fails clearly.
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        key.to_str().unwrap(),
        "2048",
    ]);
    let r = run(s
        .gantry(&[
            "-i",
            "backend=*:1.5.1",
            "--pr",
            "--github-app-id",
            "4242",
            "--github-app-key",
        ])
        .arg(&key)
        .env_remove("GITHUB_TOKEN"));
    fails_with(
        &r,
        "find the GitHub App 4242's installation on acme/gitops: GitHub rejected the credentials (401",
    );
}

fn decoded(contents: &Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(contents.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn commit_via_api_reapplies_the_bump_when_the_branch_moved() {
    let s = setup();
    let head = git(&s.clone, &["rev-parse", "HEAD"]);
    // Another pipeline bumps frontend just as our commit is about to land.
    let bare = s.remote.bare.clone();
    let other = s.remote.dir.path().join("other");
    s.gh.state().before_commit = Some(Box::new(move |_: &Path| {
        git(
            bare.parent().unwrap(),
            &[
                "clone",
                "-q",
                bare.to_str().unwrap(),
                other.to_str().unwrap(),
            ],
        );
        let file = other.join(PROD);
        let text = std::fs::read_to_string(&file).unwrap();
        let text = text.replace(
            "frontend\n    newTag: \"1.3.2\"",
            "frontend\n    newTag: \"2.0.0\"",
        );
        std::fs::write(&file, text).unwrap();
        git(&other, &["commit", "-qam", "Bump frontend to 2.0.0"]);
        git(&other, &["push", "-q", "origin", "main"]);
    }));
    let r = s.bump(&["-i", "backend=*:1.5.0", "--commit", "--commit-via", "api"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("through the GitHub API after 2 attempts"),
        "{}",
        r.stdout
    );

    let log = s.remote.log();
    let subjects: Vec<&str> = log.lines().map(|l| l.split_once('|').unwrap().1).collect();
    assert_eq!(
        subjects[..3],
        ["Bump backend to 1.5.0", "Bump frontend to 2.0.0", "seed"]
    );
    let file = s.remote.show(PROD);
    assert!(file.contains("backend\n    newTag: \"1.5.0\""), "{file}");
    assert!(
        file.contains("frontend\n    newTag: \"2.0.0\""),
        "both bumps survive: {file}"
    );
    assert_eq!(
        git(&s.remote.bare, &["log", "-1", "--format=%an", "main"]),
        "GitHub"
    );

    let reqs = s.gh.requests();
    let commits = graphql_calls(&reqs, "GantryCommit");
    assert_eq!(commits.len(), 2);
    let heads: Vec<&Value> = commits
        .iter()
        .map(|c| &c["input"]["expectedHeadOid"])
        .collect();
    assert_ne!(
        heads[0], heads[1],
        "the second try is based on the new head"
    );
    let input = &commits[1]["input"];
    assert_eq!(
        input["branch"],
        json!({ "repositoryNameWithOwner": format!("{OWNER}/{NAME}"), "branchName": "main" })
    );
    assert_eq!(input["message"]["headline"], "Bump backend to 1.5.0");
    assert_eq!(input["fileChanges"]["additions"][0]["path"], PROD);
    assert_eq!(
        decoded(&input["fileChanges"]["additions"][0]["contents"]),
        file
    );
    assert_eq!(graphql_calls(&reqs, "GantryBranchHead").len(), 2);
    let contents: Vec<&str> = reqs
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/repos/acme/gitops/contents/"))
        .map(|r| r.query.as_str())
        .collect();
    assert_eq!(contents.len(), 2);
    assert!(
        contents.iter().all(|q| q.starts_with("ref=")),
        "{contents:?}"
    );
    s.assert_clone_untouched(&head);

    // Again: main already carries it, nothing is committed.
    let r = s.bump(&["-i", "backend=*:1.5.0", "--commit", "--commit-via", "api"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("acme/gitops@main already carries this bump"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_pull_request_with_a_verified_commit_on_github_enterprise() {
    let s = setup();
    let api = format!("{}/api/v3", s.gh.url());
    let r = run(s
        .gantry(&[
            "-i",
            "backend=*:1.5.0",
            "--pr",
            "--commit-via",
            "api",
            "--auto-merge",
            "merge",
        ])
        .args(["--github-api-url", &api]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let branch = "gantry/overlays-prod/backend";
    let main = s.branch("main").unwrap();
    let tip = s.branch(branch).unwrap();
    assert_eq!(
        git(&s.remote.bare, &["rev-parse", &format!("{tip}^")]),
        main
    );
    assert_eq!(
        git(&s.remote.bare, &["log", "-1", "--format=%an", &tip]),
        "GitHub"
    );
    let reqs = s.gh.requests();
    assert!(
        reqs.iter().all(|r| r.prefixed),
        "REST under /api/v3, GraphQL at /api/graphql"
    );
    assert_eq!(
        *bodies(&reqs, "POST", "/repos/acme/gitops/git/refs")[0],
        json!({ "ref": format!("refs/heads/{branch}"), "sha": main })
    );
    let commit = &graphql_calls(&reqs, "GantryCommit")[0]["input"];
    assert_eq!(commit["branch"]["branchName"], branch);
    assert_eq!(commit["expectedHeadOid"], main);
    assert_eq!(s.gh.pulls()[0].auto_merge.as_deref(), Some("MERGE"));

    // A re-run moves the branch back to main's tip (force) and commits again.
    let r = run(s
        .gantry(&["-i", "backend=*:1.5.1", "--pr", "--commit-via", "api"])
        .args(["--github-api-url", &api]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("updated pull request #1"), "{}", r.stdout);
    let reqs = s.gh.requests();
    assert_eq!(
        *bodies(
            &reqs,
            "PATCH",
            &format!("/repos/acme/gitops/git/refs/heads/{branch}")
        )[0],
        json!({ "sha": main, "force": true })
    );
    let tip = s.branch(branch).unwrap();
    assert_eq!(
        git(&s.remote.bare, &["rev-parse", &format!("{tip}^")]),
        main,
        "one commit on main"
    );
    assert!(s.show(branch, PROD).contains("newTag: \"1.5.1\""));
}
