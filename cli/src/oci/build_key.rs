//! The content key of an image build: a hash of everything that determines the
//! image — the context's files after `.dockerignore`, the Dockerfile, build
//! args, target and platforms. Two builds with the same key produce the same
//! image (for pinned base images), so a registry that already has the key
//! tagged needs no build at all.
//!
//! Names, contents, permission bits and symlink targets count; timestamps,
//! owners and where the context lives do not.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest as _, Sha256};

use crate::oci::layout::hex;

/// Bumped whenever what goes into the key changes, so old keys never match.
const KEY_VERSION: &str = "gantry-build-key/v1";

/// Prefix of the tag that records a build's key in the registry.
pub const KEY_TAG_PREFIX: &str = "gantry-build-";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: bad pattern {pattern:?}: {why}")]
    Pattern {
        path: PathBuf,
        line: usize,
        pattern: String,
        why: String,
    },
}

pub struct Inputs<'a> {
    pub context: &'a Path,
    pub dockerfile: &'a Path,
    pub build_args: &'a [(String, String)],
    pub platforms: &'a [String],
    pub target: Option<&'a str>,
}

/// The key as a tag: `gantry-build-<sha256 hex>`.
pub fn key_tag(inputs: &Inputs) -> Result<String, KeyError> {
    Ok(format!("{KEY_TAG_PREFIX}{}", key(inputs)?))
}

pub fn key(inputs: &Inputs) -> Result<String, KeyError> {
    let mut h = Sha256::new();
    let mut line = |s: String| {
        h.update(s.as_bytes());
        h.update(b"\n");
    };
    line(KEY_VERSION.to_owned());
    line(format!("dockerfile {}", hash_file(inputs.dockerfile)?));
    line(format!("target {}", inputs.target.unwrap_or("")));
    let mut platforms = inputs.platforms.to_vec();
    platforms.sort();
    line(format!("platforms {}", platforms.join(",")));
    let mut args = inputs.build_args.to_vec();
    args.sort();
    for (k, v) in args {
        line(format!("arg {k:?}={v:?}"));
    }
    let ignore = DockerIgnore::for_build(inputs.context, inputs.dockerfile)?;
    for entry in context_entries(inputs.context, &ignore)? {
        line(entry);
    }
    Ok(hex(&h.finalize()))
}

/// One line per context entry, in path order.
fn context_entries(context: &Path, ignore: &DockerIgnore) -> Result<Vec<String>, KeyError> {
    let io = |path: &Path, source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut lines = Vec::new();
    let walk = walkdir::WalkDir::new(context)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            // Without exceptions nothing under an excluded directory can come
            // back, so its subtree is not even read (node_modules, target/).
            ignore.has_exceptions || !ignore.excluded(&relative(context, e.path()))
        });
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(context).to_owned();
            io(&path, e.into())
        })?;
        let rel = relative(context, entry.path());
        if ignore.excluded(&rel) {
            continue;
        }
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(|e| io(entry.path(), e))?;
        let mode = permissions(&meta);
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(|e| io(entry.path(), e))?;
            lines.push(format!("link {rel:?} {:?}", target.to_string_lossy()));
        } else if kind.is_dir() {
            lines.push(format!("dir {rel:?} {mode:o}"));
        } else if kind.is_file() {
            lines.push(format!(
                "file {rel:?} {mode:o} {}",
                hash_file(entry.path())?
            ));
        }
    }
    Ok(lines)
}

fn relative(context: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(context).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(unix)]
fn permissions(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn permissions(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

fn hash_file(path: &Path) -> Result<String, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// `.dockerignore` with Docker's semantics: patterns match paths relative to
/// the context (a leading `/` is dropped), `*` stays within a path segment,
/// `**` spans any number of them, a pattern that matches a directory matches
/// everything below it, `!` re-includes, and the last matching line wins.
pub struct DockerIgnore {
    rules: Vec<(GlobMatcher, bool)>,
    has_exceptions: bool,
}

impl DockerIgnore {
    /// BuildKit reads `<Dockerfile>.dockerignore` first, then the context's.
    pub fn for_build(context: &Path, dockerfile: &Path) -> Result<DockerIgnore, KeyError> {
        let mut beside = dockerfile.as_os_str().to_owned();
        beside.push(".dockerignore");
        for path in [PathBuf::from(beside), context.join(".dockerignore")] {
            match std::fs::read_to_string(&path) {
                Ok(text) => return DockerIgnore::parse(&text, &path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(KeyError::Io { path, source }),
            }
        }
        Ok(DockerIgnore {
            rules: Vec::new(),
            has_exceptions: false,
        })
    }

    pub fn parse(text: &str, path: &Path) -> Result<DockerIgnore, KeyError> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| KeyError::Pattern {
                    path: path.to_owned(),
                    line: i + 1,
                    pattern: pattern.to_owned(),
                    why: e.kind().to_string(),
                })?;
            rules.push((glob.compile_matcher(), exception));
        }
        let has_exceptions = rules.iter().any(|(_, exception)| *exception);
        Ok(DockerIgnore {
            rules,
            has_exceptions,
        })
    }

    /// Whether a context-relative path (with `/` separators) is left out.
    pub fn excluded(&self, rel: &str) -> bool {
        let mut excluded = false;
        for (glob, exception) in &self.rules {
            let matches = glob.is_match(rel)
                || rel
                    .match_indices('/')
                    .any(|(i, _)| glob.is_match(&rel[..i]));
            if matches {
                excluded = !exception;
            }
        }
        excluded
    }
}

/// Go's `filepath.Clean` on a pattern, as Docker applies it, minus a leading `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn dockerignore_follows_docker() {
        let i = ignore(
            "# comment\n*.md\n!README.md\nnode_modules\n**/*.log\n/build/\ndocs/**\ntemp?\n./dist\n",
        );
        for (path, out) in [
            ("CHANGES.md", true),
            ("README.md", false),
            ("sub/CHANGES.md", false), // `*` does not cross `/`
            ("node_modules", true),
            ("node_modules/a/b.js", true), // a directory match covers its contents
            ("sub/node_modules/x", false),
            ("x.log", true),
            ("a/b/c.log", true),
            ("build/out.o", true),
            ("docs/a/b.html", true),
            ("temp1", true),
            ("temp12", false),
            ("dist/app.js", true),
            ("src/main.rs", false),
        ] {
            assert_eq!(i.excluded(path), out, "{path}");
        }
    }

    #[test]
    fn last_matching_line_wins() {
        let i = ignore("*\n!src\nsrc/*.tmp\n");
        assert!(i.excluded("Dockerfile.other"));
        assert!(!i.excluded("src/main.rs"));
        assert!(i.excluded("src/x.tmp"));
    }

    #[test]
    fn bad_patterns_name_the_line() {
        let err = DockerIgnore::parse("ok\n[z-a\n", Path::new("ctx/.dockerignore"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("ctx/.dockerignore:2: bad pattern"), "{err}");
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn key_of(ctx: &Path, args: &[(String, String)], platforms: &[String]) -> String {
        key(&Inputs {
            context: ctx,
            dockerfile: &ctx.join("Dockerfile"),
            build_args: args,
            platforms,
            target: None,
        })
        .unwrap()
    }

    #[test]
    fn key_tracks_what_determines_the_image() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for root in [a.path(), b.path()] {
            write(root, "Dockerfile", "FROM scratch\nCOPY . /\n");
            write(root, ".dockerignore", "*.log\n");
            write(root, "src/app.txt", "v1");
        }
        let base = key_of(a.path(), &[], &[]);
        assert_eq!(base, key_of(b.path(), &[], &[]), "location does not count");

        write(a.path(), "debug.log", "noise");
        assert_eq!(
            base,
            key_of(a.path(), &[], &[]),
            "ignored files do not count"
        );

        let arg = [("VERSION".to_owned(), "1".to_owned())];
        assert_ne!(base, key_of(a.path(), &arg, &[]));
        assert_ne!(base, key_of(a.path(), &[], &["linux/arm64".to_owned()]));

        write(a.path(), "src/app.txt", "v2");
        let changed = key_of(a.path(), &[], &[]);
        assert_ne!(base, changed);

        write(a.path(), "Dockerfile", "FROM scratch\nCOPY src /\n");
        assert_ne!(changed, key_of(a.path(), &[], &[]));
    }

    #[cfg(unix)]
    #[test]
    fn key_tracks_modes_and_empty_dirs() {
        use std::os::unix::fs::PermissionsExt as _;
        let a = tempfile::tempdir().unwrap();
        write(a.path(), "Dockerfile", "FROM scratch\n");
        write(a.path(), "run.sh", "#!/bin/sh\n");
        let base = key_of(a.path(), &[], &[]);
        std::fs::set_permissions(
            a.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let exec = key_of(a.path(), &[], &[]);
        assert_ne!(base, exec);
        std::fs::create_dir(a.path().join("empty")).unwrap();
        assert_ne!(exec, key_of(a.path(), &[], &[]));
    }
}
