//! What a registry's answers mean: its error bodies (the distribution spec's
//! `errors[]`), bounded reads of answer bodies, and the errors made of them.

use reqwest::Response;

use crate::registry::RegistryError;

pub(super) fn too_large(what: &str, max: u64) -> RegistryError {
    RegistryError::Integrity { reference: what.to_owned(), message: format!("larger than the {max}-byte limit") }
}

/// The registry's own words (`errors[].message` of the distribution spec), else the body's start.
pub(super) fn protocol(what: &str, status: u16, body: &str) -> RegistryError {
    RegistryError::Protocol { reference: what.to_owned(), status, message: error_message(body) }
}

pub(crate) fn error_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(body) {
        let parts: Vec<String> = e.errors.iter().map(|i| format!("{} {}", i.code, i.message).trim().to_owned()).collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let t = body.trim();
    if t.is_empty() {
        "(no details)".into()
    } else {
        t.chars().take(300).collect()
    }
}

pub(super) async fn read_text(resp: Response) -> String {
    read_limited(resp, 64 * 1024, "").await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

pub(super) async fn read_limited(mut resp: Response, max: u64, what: &str) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large(what, max));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if (out.len() + c.len()) as u64 > max {
                    return Err(too_large(what, max));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(RegistryError::Unreachable {
                    registry: what.to_owned(),
                    message: "the answer broke off".into(),
                    source: Some(Box::new(e)),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_bodies_become_messages() {
        let body = r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:ab"}]}"#;
        assert_eq!(error_message(body), "MANIFEST_BLOB_UNKNOWN blob unknown to registry");
        assert_eq!(error_message(""), "(no details)");
        assert_eq!(error_message("<html>bad gateway</html>"), "<html>bad gateway</html>");
    }
}
