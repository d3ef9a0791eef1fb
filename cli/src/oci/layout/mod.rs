//! Reading images from an OCI image layout: a directory (`oci:DIR[:TAG]`) or
//! the same layout in a tar file (`oci-archive:FILE[:TAG]`).
//!
//! Layers are never loaded into memory: a blob is located as a byte range of a
//! file (its own file in a directory, or its span inside the tar), which the
//! pusher streams. Manifests and configs are small and are read and checked
//! against their digests up front, so a corrupt layout fails before anything
//! is pushed.
//!
//! Here: sources, the layout's index and images; `blobs`: where each blob's
//! bytes are.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageIndex};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

mod blobs;

/// The annotation OCI layouts use to name a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Manifests larger than this are refused (registries cap them at 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{0}: expected oci:DIR[:TAG] or oci-archive:FILE[:TAG]")]
    BadSource(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("{layout}: blob {digest} is missing")]
    MissingBlob { layout: PathBuf, digest: String },
    #[error("{layout}: blob {digest} has {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        layout: PathBuf,
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{layout}: blob {expected} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        layout: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{layout}: {problem}")]
    Selection { layout: PathBuf, problem: String },
}

impl LayoutError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        LayoutError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Where an image comes from, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub archive: bool,
    pub tag: Option<String>,
}

impl Source {
    pub fn parse(spec: &str) -> Result<Source, LayoutError> {
        let (archive, rest) = if let Some(rest) = spec.strip_prefix("oci:") {
            (false, rest)
        } else if let Some(rest) = spec.strip_prefix("oci-archive:") {
            (true, rest)
        } else {
            return Err(LayoutError::BadSource(spec.to_owned()));
        };
        // As skopeo: the text after the last ':' is a tag unless it looks like
        // part of a path.
        let (path, tag) = match rest.rsplit_once(':') {
            Some((path, tag)) if !tag.is_empty() && !tag.contains('/') => (path, Some(tag)),
            _ => (rest, None),
        };
        if path.is_empty() {
            return Err(LayoutError::BadSource(spec.to_owned()));
        }
        Ok(Source {
            path: PathBuf::from(path),
            archive,
            tag: tag.map(str::to_owned),
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.archive { "oci-archive" } else { "oci" };
        write!(f, "{scheme}:{}", self.path.display())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// A byte range of a file holding one blob.
#[derive(Debug, Clone)]
pub struct BlobFile {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// An opened layout: its index and where each blob lives.
pub struct Layout {
    root: PathBuf,
    /// For archives, the span of every regular file, by its path in the tar.
    archive: Option<HashMap<String, (u64, u64)>>,
    index: ImageIndex,
}

impl Layout {
    pub fn open(source: &Source) -> Result<Layout, LayoutError> {
        let root = source.path.clone();
        let archive = if source.archive {
            Some(index_archive(&root)?)
        } else {
            let layout_file = root.join("oci-layout");
            if !layout_file.is_file() {
                return Err(LayoutError::Invalid {
                    path: root,
                    what: "not an OCI image layout (no oci-layout file)".into(),
                });
            }
            None
        };
        let mut layout = Layout {
            root,
            archive,
            index: ImageIndex::default(),
        };
        let index_bytes = layout.read_file("index.json", MAX_MANIFEST)?;
        layout.index = serde_json::from_slice(&index_bytes).map_err(|e| LayoutError::Invalid {
            path: layout.root.join("index.json"),
            what: format!("not an OCI image index: {e}"),
        })?;
        Ok(layout)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The manifest `tag` names, or the only one when no tag is given.
    pub fn select(&self, tag: Option<&str>) -> Result<Descriptor, LayoutError> {
        let manifests = self.index.manifests();
        let name = |d: &Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned()
        };
        let problem = match tag {
            Some(tag) => match manifests.iter().find(|d| name(d).as_deref() == Some(tag)) {
                Some(d) => return Ok(d.clone()),
                None => format!("no image tagged {tag:?}"),
            },
            None if manifests.len() == 1 => return Ok(manifests[0].clone()),
            None if manifests.is_empty() => "the layout holds no image".to_owned(),
            None => "the layout holds several images; name one with :TAG".to_owned(),
        };
        let names: Vec<String> = manifests.iter().filter_map(name).collect();
        let known = if names.is_empty() {
            String::new()
        } else {
            format!(" (tags: {})", names.join(", "))
        };
        Err(LayoutError::Selection {
            layout: self.root.clone(),
            problem: format!("{problem}{known}"),
        })
    }

    /// Everything needed to push the image `root` names: its manifests with
    /// their bytes (children before parents) and the unique blobs they use.
    pub fn image(&self, root: &Descriptor) -> Result<Image, LayoutError> {
        let mut image = Image {
            root: root.clone(),
            manifests: Vec::new(),
            blobs: Vec::new(),
        };
        let mut seen = HashSet::new();
        self.collect(root, &mut image, &mut seen)?;
        for blob in &image.blobs {
            self.blob_file(blob)?;
        }
        Ok(image)
    }

    fn collect(
        &self,
        desc: &Descriptor,
        image: &mut Image,
        seen: &mut HashSet<String>,
    ) -> Result<(), LayoutError> {
        let bytes = self.read_blob(desc, MAX_MANIFEST)?;
        let parsed: ManifestShape =
            serde_json::from_slice(&bytes).map_err(|e| LayoutError::Invalid {
                path: self.blob_path(desc.digest()),
                what: format!("not an image manifest or index: {e}"),
            })?;
        let media_type = parsed
            .media_type
            .unwrap_or_else(|| desc.media_type().to_string());
        for child in &parsed.manifests {
            self.collect(child, image, seen)?;
        }
        for blob in parsed.config.iter().chain(&parsed.layers) {
            if is_distributable(blob) && seen.insert(blob.digest().to_string()) {
                image.blobs.push(blob.clone());
            }
        }
        if let Some(config) = &parsed.config {
            // Small and cheap to check; catches a corrupt layout before any upload.
            self.read_blob(config, MAX_MANIFEST)?;
        }
        image.manifests.push(Manifest {
            digest: desc.digest().to_string(),
            media_type,
            bytes,
        });
        Ok(())
    }
}

/// An image ready to push.
#[derive(Debug)]
pub struct Image {
    pub root: Descriptor,
    /// Children first, the root last.
    pub manifests: Vec<Manifest>,
    pub blobs: Vec<Descriptor>,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Image {
    pub fn digest(&self) -> String {
        self.root.digest().to_string()
    }

    pub fn root_manifest(&self) -> &Manifest {
        self.manifests.last().expect("an image has a root manifest")
    }
}

/// The fields of an image manifest or index that name other content.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestShape {
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Foreign/non-distributable layers are fetched from their own URLs, never pushed.
fn is_distributable(desc: &Descriptor) -> bool {
    let media_type = desc.media_type().to_string();
    !(media_type.contains("nondistributable") || media_type.contains(".foreign."))
}

fn blob_rel_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.digest())
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Finds every regular file in a tar without reading the file contents.
fn index_archive(path: &Path) -> Result<HashMap<String, (u64, u64)>, LayoutError> {
    let file = File::open(path).map_err(|e| LayoutError::io(path, e))?;
    let mut magic = [0u8; 2];
    if (&file).read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b] {
        return Err(LayoutError::Invalid {
            path: path.to_owned(),
            what: "compressed archives are not supported: an OCI archive is a plain tar".into(),
        });
    }
    (&file)
        .seek(SeekFrom::Start(0))
        .map_err(|e| LayoutError::io(path, e))?;
    let bad = |e: std::io::Error| LayoutError::Invalid {
        path: path.to_owned(),
        what: format!("not a readable tar archive: {e}"),
    };
    let mut archive = tar::Archive::new(file);
    let mut entries = HashMap::new();
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_owned();
        entries.insert(name, (entry.raw_file_position(), entry.size()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        let s = Source::parse("oci:out/layout:v1").unwrap();
        assert_eq!(
            (s.path.as_path(), s.archive, s.tag.as_deref()),
            (Path::new("out/layout"), false, Some("v1"))
        );
        let s = Source::parse("oci-archive:/tmp/a.tar").unwrap();
        assert_eq!((s.archive, s.tag), (true, None));
        let s = Source::parse("oci:./x").unwrap();
        assert_eq!(s.path, Path::new("./x"));
        assert!(Source::parse("docker://x").is_err());
        assert!(Source::parse("oci::v1").is_err());
    }
}
