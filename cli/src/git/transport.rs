//! Talking to remotes: fetch, push (with a compare-and-swap for remotes on
//! this machine) and credentials. A push's failure says whether it lost a
//! race, which is worth another attempt.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use git2::{
    Cred, CredentialType, ErrorCode, FetchOptions, Oid, PushOptions, RemoteCallbacks, Repository,
};
use octocrab::secrecy::{ExposeSecret as _, SecretString};

use super::{Context as _, GitError};

/// One push attempt's failure.
#[derive(Debug)]
pub(super) enum Attempt {
    /// Another push won: worth fetching and trying again.
    Race(String),
    /// The remote refused for another reason (hook, protected branch).
    Rejected(String),
    Fatal(GitError),
}

impl Attempt {
    pub(super) fn reason(&self) -> String {
        match self {
            Attempt::Race(r) | Attempt::Rejected(r) => r.clone(),
            Attempt::Fatal(e) => e.to_string(),
        }
    }
}

/// Messages with which git servers report that the ref moved under us.
pub(super) fn is_race(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "non-fast-forward",
        "fetch first",
        "failed to update ref",
        "cannot lock ref",
        "failed to lock",
        "stale info",
        "incorrect old value",
    ]
    .iter()
    .any(|s| m.contains(s))
}

pub(super) fn push_commit(
    repo: &Repository,
    remote: &mut git2::Remote<'_>,
    commit: Oid,
    branch: &str,
    token: Option<&SecretString>,
) -> Result<(), Attempt> {
    if let Some(path) = remote.url().ok().and_then(local_path) {
        return push_local(repo, &path, commit, branch);
    }
    let refspec = format!("{commit}:refs/heads/{branch}");
    push_refspec(remote, &refspec, token)
}

pub(super) fn push_refspec(
    remote: &mut git2::Remote<'_>,
    refspec: &str,
    token: Option<&SecretString>,
) -> Result<(), Attempt> {
    let status = RefCell::new(None::<String>);
    let mut callbacks = credentials(token);
    callbacks.push_update_reference(|_, message| {
        if let Some(m) = message {
            *status.borrow_mut() = Some(m.to_string());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    let pushed = remote.push(&[refspec], Some(&mut options));
    drop(options);
    match pushed {
        Err(e) if e.code() == ErrorCode::NotFastForward => {
            Err(Attempt::Race(e.message().to_string()))
        }
        Err(e) => Err(Attempt::Fatal(GitError::Git {
            context: "push failed".into(),
            cause: e,
        })),
        Ok(()) => match status.into_inner() {
            None => Ok(()),
            Some(m) if is_race(&m) => Err(Attempt::Race(m)),
            Some(m) => Err(Attempt::Rejected(m)),
        },
    }
}

/// The path of a remote on this machine (`file://` or a plain path).
pub(super) fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(PathBuf::from(p));
    }
    let scp_like = url
        .split_once(':')
        .is_some_and(|(host, _)| !host.contains('/'));
    (!url.contains("://") && !scp_like).then(|| PathBuf::from(url))
}

/// libgit2's local transport overwrites the remote ref without checking
/// that it still holds the value it advertised, so two pipelines pushing at
/// once could silently drop a commit. For a remote on this machine, copy the
/// new objects straight into its object database and move the branch with a
/// compare-and-swap under the ref lock instead.
pub(super) fn push_local(
    repo: &Repository,
    path: &Path,
    commit: Oid,
    branch: &str,
) -> Result<(), Attempt> {
    let fatal = |context: String| move |cause| Attempt::Fatal(GitError::Git { context, cause });
    let target = Repository::open(path).map_err(fatal(format!(
        "cannot open the remote at {}",
        path.display()
    )))?;
    let refname = format!("refs/heads/{branch}");
    let current = target.refname_to_id(&refname).ok();
    if let Some(current) = current {
        if current == commit {
            return Ok(());
        }
        if !repo.graph_descendant_of(commit, current).unwrap_or(false) {
            return Err(Attempt::Race(
                "non-fast-forward: the remote branch has moved".into(),
            ));
        }
    }
    copy_objects(repo, &target, commit)
        .map_err(fatal(format!("cannot copy objects to {}", path.display())))?;
    let moved = match current {
        Some(current) => target.reference_matching(&refname, commit, true, current, "gantry: push"),
        None => target.reference(&refname, commit, false, "gantry: push"),
    };
    match moved {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
            ) =>
        {
            Err(Attempt::Race(format!(
                "the remote branch moved during the push: {}",
                e.message()
            )))
        }
        Err(e) => Err(fatal(format!(
            "cannot update {refname} in {}",
            path.display()
        ))(e)),
    }
}

/// Copies every object reachable from `tip` that `to` lacks. An object that
/// exists in `to` is assumed complete (as git does), which prunes the walk.
pub(super) fn copy_objects(
    from: &Repository,
    to: &Repository,
    tip: Oid,
) -> Result<(), git2::Error> {
    let (src, dst) = (from.odb()?, to.odb()?);
    let copy = |oid: Oid| -> Result<bool, git2::Error> {
        if dst.exists(oid) {
            return Ok(false);
        }
        let object = src.read(oid)?;
        dst.write(object.kind(), object.data())?;
        Ok(true)
    };
    let mut commits = vec![tip];
    while let Some(id) = commits.pop() {
        if dst.exists(id) {
            continue;
        }
        let commit = from.find_commit(id)?;
        let mut trees = vec![commit.tree_id()];
        while let Some(tree_id) = trees.pop() {
            if dst.exists(tree_id) {
                continue;
            }
            for entry in from.find_tree(tree_id)?.iter() {
                match entry.kind() {
                    Some(git2::ObjectType::Tree) => trees.push(entry.id()),
                    Some(git2::ObjectType::Blob) => {
                        copy(entry.id())?;
                    }
                    _ => {} // submodule commits live elsewhere
                }
            }
            copy(tree_id)?;
        }
        copy(id)?;
        commits.extend(commit.parent_ids());
    }
    Ok(())
}

pub(super) fn fetch(
    repo: &Repository,
    remote: &mut git2::Remote<'_>,
    branch: &str,
    token: Option<&SecretString>,
) -> Result<Oid, GitError> {
    let name = remote.name().ok().flatten().unwrap_or("origin").to_string();
    let tracking = format!("refs/remotes/{name}/{branch}");
    if let Some(path) = remote.url().ok().and_then(local_path) {
        // The local transport trips over refs that vanish while it lists them.
        let source = Repository::open(&path)
            .ctx(|| format!("cannot open the remote at {}", path.display()))?;
        let tip = source
            .refname_to_id(&format!("refs/heads/{branch}"))
            .ctx(|| format!("{name} has no branch {branch}"))?;
        copy_objects(&source, repo, tip).ctx(|| format!("cannot fetch {name}/{branch}"))?;
        repo.reference(&tracking, tip, true, "gantry: fetch")
            .ctx(|| format!("cannot update {tracking}"))?;
        return Ok(tip);
    }
    let mut options = FetchOptions::new();
    options.remote_callbacks(credentials(token));
    remote
        .fetch(
            &[format!("+refs/heads/{branch}:{tracking}")],
            Some(&mut options),
            None,
        )
        .ctx(|| format!("cannot fetch {name}/{branch}"))?;
    repo.refname_to_id(&tracking)
        .ctx(|| format!("{name} has no branch {branch}"))
}

/// Credentials for remotes: a token from the environment for https (as
/// GitHub Actions uses `GITHUB_TOKEN`), the SSH agent or a key for ssh.
/// Tokens are only handed to libgit2, never printed.
pub(super) fn credentials(token: Option<&SecretString>) -> RemoteCallbacks<'static> {
    let given = token.map(|t| t.expose_secret().to_string());
    let mut callbacks = RemoteCallbacks::new();
    let mut tries = 0;
    callbacks.credentials(move |url, username, allowed| {
        tries += 1;
        if tries > 3 {
            return Err(git2::Error::from_str(
                "authentication failed: the remote refused the credentials",
            ));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let token = given.clone().or_else(|| {
                ["GANTRY_GIT_TOKEN", "GITHUB_TOKEN", "GH_TOKEN"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|t| !t.is_empty()))
            });
            if let Some(token) = token {
                let user = std::env::var("GANTRY_GIT_USERNAME")
                    .ok()
                    .or(username.map(String::from));
                return Cred::userpass_plaintext(
                    user.as_deref().unwrap_or("x-access-token"),
                    &token,
                );
            }
            let config = git2::Config::open_default()?;
            return Cred::credential_helper(&config, url, username).map_err(|_| {
                git2::Error::from_str(
                    "the remote needs credentials: set GANTRY_GIT_TOKEN or GITHUB_TOKEN",
                )
            });
        }
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            if tries == 1 && std::env::var_os("SSH_AUTH_SOCK").is_some() {
                return Cred::ssh_key_from_agent(user);
            }
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            let key = std::env::var_os("GANTRY_SSH_KEY")
                .map(PathBuf::from)
                .or_else(|| {
                    ["id_ed25519", "id_ecdsa", "id_rsa"]
                        .iter()
                        .map(|k| home.join(".ssh").join(k))
                        .find(|p| p.exists())
                });
            if let Some(key) = key {
                let passphrase = std::env::var("GANTRY_SSH_KEY_PASSPHRASE").ok();
                return Cred::ssh_key(user, None, &key, passphrase.as_deref());
            }
            return Err(git2::Error::from_str(
                "no SSH agent and no key: set SSH_AUTH_SOCK or GANTRY_SSH_KEY",
            ));
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        Cred::default()
    });
    callbacks
}
