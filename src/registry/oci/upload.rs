//! Blob uploads: POST a session, PATCH chunks of at most [`MAX_CHUNK`] bytes
//! (or one PUT with the body for a small blob), then PUT `?digest=`. The
//! content is hashed on the way, so a layout blob that does not match its
//! digest is reported before the upload is committed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response};
use sha2::{Digest as _, Sha256};

use super::answers::{protocol, read_text};
use super::send::Call;
use super::{OciRegistry, CHUNK_TIMEOUT, MAX_CHUNK, MAX_UPLOAD_SESSIONS};
use crate::core::ident::{Digest, Repository};
use crate::registry::auth::Access;
use crate::registry::endpoint;
use crate::registry::RegistryError;

/// A blob to upload: `size` bytes of a file from `offset` (a layout blob,
/// maybe inside a tar), opened once for all of the blob's upload sessions.
pub(super) struct BlobFile {
    file: Arc<File>,
    path: String,
    offset: u64,
    size: u64,
}

impl BlobFile {
    pub(super) fn open(path: &Path, offset: u64, size: u64) -> Result<Self, RegistryError> {
        let file = File::open(path).map_err(|e| RegistryError::Local {
            path: path.display().to_string(),
            message: "cannot be opened".into(),
            source: Some(e),
        })?;
        Ok(Self { file: Arc::new(file), path: path.display().to_string(), offset, size })
    }

    /// Starts reading bytes `start..start+len` of the blob into `buf` (a
    /// buffer an earlier chunk gave back, or a new one) and feeding them to
    /// `hasher`, on a blocking thread, right away: the upload awaits it while
    /// the chunk before is on the wire.
    fn read_chunk(
        &self,
        start: u64,
        len: u64,
        mut hasher: Sha256,
        mut buf: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(Bytes, Sha256), RegistryError>> {
        let (file, pos, path) = (Arc::clone(&self.file), self.offset + start, self.path.clone());
        let read = tokio::task::spawn_blocking(move || {
            // A buffer of the same length is overwritten in place, not zeroed again.
            buf.resize(len as usize, 0);
            file.read_exact_at(&mut buf, pos).map_err(|e| RegistryError::Local {
                path: path.clone(),
                message: format!("cannot read {len} bytes at offset {pos}"),
                source: Some(e),
            })?;
            hasher.update(&buf);
            Ok((Bytes::from(buf), hasher))
        });
        let path = self.path.clone();
        async move { read.await.map_err(|e| RegistryError::Local { path, message: format!("reader task failed: {e}"), source: None })? }
    }

    fn describe(&self) -> String {
        if self.offset > 0 {
            format!("{} (at offset {})", self.path, self.offset)
        } else {
            self.path.clone()
        }
    }
}

pub(super) enum SessionError {
    /// The registry lost the upload; a new session may work.
    Restart(String),
    Fatal(RegistryError),
}

impl From<RegistryError> for SessionError {
    fn from(e: RegistryError) -> Self {
        SessionError::Fatal(e)
    }
}

impl OciRegistry {
    pub(super) async fn upload(&self, repo: &Repository, digest: &Digest, blob: BlobFile) -> Result<(), RegistryError> {
        let what = format!("{repo}@{digest}");
        let mut last = String::new();
        for _ in 0..MAX_UPLOAD_SESSIONS {
            match self.upload_session(repo, digest, &blob, &what).await {
                Ok(()) => {
                    self.remember(what);
                    return Ok(());
                }
                Err(SessionError::Restart(why)) => last = why,
                Err(SessionError::Fatal(e)) => return Err(e),
            }
        }
        Err(RegistryError::Protocol {
            reference: what,
            status: 0,
            message: format!("the upload failed {MAX_UPLOAD_SESSIONS} times over (last: {last})"),
        })
    }

    /// POST, then PATCH chunks (or one PUT with the body for a small blob), then PUT ?digest=.
    async fn upload_session(&self, repo: &Repository, digest: &Digest, src: &BlobFile, what: &str) -> Result<(), SessionError> {
        let size = src.size;
        let origin = endpoint::origin(repo.registry());
        let start = Call::new(Method::POST, Self::api(repo, super::ApiPath::Uploads), repo, Access::Push, what.to_owned());
        let resp = self.send(&start).await?;
        let status = resp.status().as_u16();
        if status != 202 {
            return Err(SessionError::Fatal(protocol(what, status, &read_text(resp).await)));
        }
        let mut location =
            location_of(&resp, &origin).ok_or_else(|| protocol(what, status, "the upload started without a Location header"))?;
        let mut final_body = None;
        let hasher = if size <= MAX_CHUNK {
            let (chunk, hasher) = src.read_chunk(0, size, Sha256::new(), Vec::new()).await?;
            final_body = Some(chunk);
            hasher
        } else {
            self.patch_chunks(repo, src, &mut location, &origin, what).await?
        };
        let actual = Digest::from_hasher(hasher);
        if &actual != digest {
            return Err(SessionError::Fatal(RegistryError::Local {
                path: src.describe(),
                message: format!("the content hashes to {actual}, not the {digest} its descriptor names; the image layout is corrupt"),
                source: None,
            }));
        }
        let mut put =
            Call::new(Method::PUT, endpoint::with_query(&location, "digest", digest.as_str()), repo, Access::Push, what.to_owned())
                .header(CONTENT_TYPE, "application/octet-stream");
        if let Some(body) = final_body {
            put = put.body(body);
            put.timeout = Some(CHUNK_TIMEOUT);
        }
        let resp = self.send(&put).await?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            s @ (404 | 416) => Err(SessionError::Restart(format!("PUT answered {s}: {}", read_text(resp).await))),
            s @ 400 => {
                let text = read_text(resp).await;
                if text.contains("BLOB_UPLOAD_INVALID") || text.contains("BLOB_UPLOAD_UNKNOWN") {
                    Err(SessionError::Restart(format!("PUT answered {s}: {text}")))
                } else {
                    Err(SessionError::Fatal(protocol(what, s, &text)))
                }
            }
            s => Err(SessionError::Fatal(protocol(what, s, &read_text(resp).await))),
        }
    }
}

impl OciRegistry {
    /// PATCHes the blob in chunks of at most [`MAX_CHUNK`] bytes, one after
    /// the other as the protocol requires, while the next chunk is read and
    /// hashed; returns the hasher fed with the whole blob. Two buffers take
    /// turns, so memory stays at two chunks per upload.
    async fn patch_chunks(
        &self,
        repo: &Repository,
        src: &BlobFile,
        location: &mut String,
        origin: &str,
        what: &str,
    ) -> Result<Sha256, SessionError> {
        let size = src.size;
        let mut offset = 0u64;
        let mut spare = Vec::new();
        let mut next = Some(src.read_chunk(0, MAX_CHUNK.min(size), Sha256::new(), Vec::new()));
        let mut hashed = None;
        while let Some(reading) = next.take() {
            let (chunk, hasher) = reading.await?;
            let len = chunk.len() as u64;
            if offset + len < size {
                next = Some(src.read_chunk(offset + len, MAX_CHUNK.min(size - offset - len), hasher, std::mem::take(&mut spare)));
            } else {
                hashed = Some(hasher);
            }
            let mut patch = Call::new(Method::PATCH, location.clone(), repo, Access::Push, what.to_owned())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, &format!("{offset}-{}", offset + len - 1))
                .body(chunk);
            patch.timeout = Some(CHUNK_TIMEOUT);
            let resp = self.send(&patch).await?;
            match resp.status().as_u16() {
                202 | 204 => {}
                s @ (400 | 404 | 416) => return Err(SessionError::Restart(format!("PATCH answered {s}: {}", read_text(resp).await))),
                s => return Err(SessionError::Fatal(protocol(what, s, &read_text(resp).await))),
            }
            if let Some(next) = location_of(&resp, origin) {
                *location = next;
            }
            // The chunk is sent; its buffer is ours again unless the client still holds it.
            if let Some(Ok(buf)) = patch.body.take().map(Bytes::try_into_mut) {
                spare = buf.into();
            }
            offset += len;
        }
        Ok(hashed.unwrap_or_default())
    }
}

fn location_of(resp: &Response, origin: &str) -> Option<String> {
    resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(|l| endpoint::resolve_location(origin, l))
}
