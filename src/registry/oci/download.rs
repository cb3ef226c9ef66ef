//! Downloads: small documents into memory, blobs into a file, both bounded
//! and fetched again when a body breaks off; blobs hashed as they arrive.

use std::path::Path;

use reqwest::header::HeaderMap;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::answers::{protocol, read_limited, read_text, too_large};
use super::send::Call;
use super::{OciRegistry, MAX_BODY_TRIES};
use crate::core::ident::Digest;
use crate::registry::RegistryError;

impl OciRegistry {
    /// GET with a bounded body, fetched again if the body breaks off.
    pub(super) async fn get_small(&self, call: &Call<'_>, max: u64) -> Result<Option<(HeaderMap, Vec<u8>)>, RegistryError> {
        let mut tries = 0;
        loop {
            let resp = self.send(call).await?;
            let status = resp.status().as_u16();
            if status == 404 {
                return Ok(None);
            }
            if status != 200 {
                return Err(protocol(&call.what, status, &read_text(resp).await));
            }
            let headers = resp.headers().clone();
            match read_limited(resp, max, &call.what).await {
                Ok(body) => return Ok(Some((headers, body))),
                Err(RegistryError::Unreachable { .. }) if tries + 1 < MAX_BODY_TRIES => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The download of one blob into `dest`, hashed and bounded as it arrives.
    pub(super) async fn download(
        &self,
        call: &Call<'_>,
        digest: &Digest,
        max_size: u64,
        dest: &Path,
    ) -> Result<(Digest, u64), RegistryError> {
        let local =
            |message: String, source: Option<std::io::Error>| RegistryError::Local { path: dest.display().to_string(), message, source };
        let mut tries = 0;
        loop {
            let mut resp = self.send(call).await?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(protocol(&call.what, status, &read_text(resp).await));
            }
            if resp.content_length().is_some_and(|n| n > max_size) {
                return Err(too_large(&call.what, max_size));
            }
            let mut file = tokio::fs::File::create(dest).await.map_err(|e| local("cannot be created".into(), Some(e)))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let outcome: Result<(), RegistryError> = async {
                loop {
                    let chunk = match resp.chunk().await {
                        Ok(Some(c)) => c,
                        Ok(None) => return Ok(()),
                        Err(e) => {
                            return Err(self.unreachable(call.repo.registry(), format!("{}: the download broke off", call.what), Some(e)))
                        }
                    };
                    size += chunk.len() as u64;
                    if size > max_size {
                        return Err(too_large(&call.what, max_size));
                    }
                    hasher.update(&chunk);
                    file.write_all(&chunk).await.map_err(|e| local("cannot be written".into(), Some(e)))?;
                }
            }
            .await;
            let outcome = match outcome {
                Ok(()) => file.flush().await.map_err(|e| local("cannot be written".into(), Some(e))),
                e => e,
            };
            drop(file);
            match outcome {
                Ok(()) => {
                    let actual = Digest::from_hasher(hasher);
                    if &actual != digest {
                        let _ = tokio::fs::remove_file(dest).await;
                        return Err(RegistryError::Integrity {
                            reference: call.what.clone(),
                            message: format!("the registry sent content that hashes to {actual}, not {digest}"),
                        });
                    }
                    return Ok((actual, size));
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(dest).await;
                    if matches!(e, RegistryError::Unreachable { .. }) && tries + 1 < MAX_BODY_TRIES {
                        tries += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}
