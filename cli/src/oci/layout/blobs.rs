//! Blobs: located as byte ranges (never loaded whole), and the small ones
//! (manifests, configs) read and checked against their digests.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use oci_spec::image::{Descriptor, Digest};

use super::{BlobFile, Layout, LayoutError, blob_rel_path, sha256_digest};

impl Layout {
    /// The byte range holding a blob, checked for presence and size.
    pub fn blob_file(&self, desc: &Descriptor) -> Result<BlobFile, LayoutError> {
        let digest = desc.digest();
        let rel = blob_rel_path(digest);
        let (path, offset, len) = match &self.archive {
            Some(entries) => match entries.get(&rel) {
                Some(&(offset, len)) => (self.root.clone(), offset, len),
                None => return Err(self.missing(digest)),
            },
            None => {
                let path = self.root.join(&rel);
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => (path, 0, m.len()),
                    Ok(_) => return Err(self.missing(digest)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(self.missing(digest));
                    }
                    Err(e) => return Err(LayoutError::io(&path, e)),
                }
            }
        };
        if len != desc.size() {
            return Err(LayoutError::SizeMismatch {
                layout: self.root.clone(),
                digest: digest.to_string(),
                expected: desc.size(),
                actual: len,
            });
        }
        Ok(BlobFile { path, offset, len })
    }

    pub(super) fn missing(&self, digest: &Digest) -> LayoutError {
        LayoutError::MissingBlob {
            layout: self.root.clone(),
            digest: digest.to_string(),
        }
    }

    pub(super) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(blob_rel_path(digest))
    }

    /// Reads a small blob whole and checks its digest.
    pub(super) fn read_blob(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, LayoutError> {
        if desc.size() > limit {
            return Err(LayoutError::Invalid {
                path: self.blob_path(desc.digest()),
                what: format!("{} bytes is too large for a manifest", desc.size()),
            });
        }
        let bytes = read_range(&self.blob_file(desc)?)?;
        let actual = sha256_digest(&bytes);
        if actual != desc.digest().to_string() {
            return Err(LayoutError::DigestMismatch {
                layout: self.root.clone(),
                expected: desc.digest().to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    pub(super) fn read_file(&self, rel: &str, limit: u64) -> Result<Vec<u8>, LayoutError> {
        let (path, offset, len) = match &self.archive {
            Some(entries) => match entries.get(rel) {
                Some(&(offset, len)) => (self.root.clone(), offset, len),
                None => {
                    return Err(LayoutError::Invalid {
                        path: self.root.clone(),
                        what: format!("not an OCI archive (no {rel})"),
                    });
                }
            },
            None => {
                let path = self.root.join(rel);
                let len = std::fs::metadata(&path)
                    .map_err(|e| LayoutError::io(&path, e))?
                    .len();
                (path, 0, len)
            }
        };
        if len > limit {
            return Err(LayoutError::Invalid {
                path: self.root.join(rel),
                what: format!("{len} bytes is too large"),
            });
        }
        read_range(&BlobFile { path, offset, len })
    }
}

pub(super) fn read_range(file: &BlobFile) -> Result<Vec<u8>, LayoutError> {
    let mut bytes = Vec::with_capacity(file.len as usize);
    let mut f = File::open(&file.path).map_err(|e| LayoutError::io(&file.path, e))?;
    f.seek(SeekFrom::Start(file.offset))
        .and_then(|_| f.take(file.len).read_to_end(&mut bytes))
        .map_err(|e| LayoutError::io(&file.path, e))?;
    Ok(bytes)
}
