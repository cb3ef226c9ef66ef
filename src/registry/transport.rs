//! The HTTP clients under the registry client: one for plain-HTTP loopback
//! registries, one for HTTPS, built on first use.
//!
//! Why two: a TLS client loads and parses the system's CA certificates when it
//! is built (about 12 ms, a third of publishing a chart to a local registry),
//! and a run that only talks to a loopback registry never needs them. The
//! plain client gets a TLS configuration that trusts nothing, and refuses to
//! follow a redirect off plain HTTP, so it can never be used for TLS by accident.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::RegistryError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// No byte for this long on an open connection means it is dead.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 5;

#[derive(Debug)]
pub struct Transport {
    plain: reqwest::Client,
    tls: OnceLock<Result<reqwest::Client, String>>,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("release-capsule/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
}

fn setup_error(message: String, source: Option<Box<dyn std::error::Error + Send + Sync>>) -> RegistryError {
    RegistryError::Unreachable { registry: "(client)".into(), message, source }
}

impl Transport {
    pub fn new() -> Result<Self, RegistryError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let trusts_nothing = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup_error("cannot set up TLS".into(), Some(Box::new(e))))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let plain = builder()
            .tls_backend_preconfigured(trusts_nothing)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.url().scheme() != "http" {
                    let to = attempt.url().to_string();
                    attempt
                        .error(format!("a plain-HTTP (loopback) registry redirected to {to}; only http:// redirects are followed from it"))
                } else if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|e| setup_error("cannot set up the HTTP client".into(), Some(Box::new(e))))?;
        Ok(Self { plain, tls: OnceLock::new() })
    }

    /// The client for `url`: plain for `http://`, TLS otherwise.
    pub fn client_for(&self, url: &str) -> Result<&reqwest::Client, RegistryError> {
        if url.starts_with("http://") {
            return Ok(&self.plain);
        }
        let tls = self.tls.get_or_init(|| {
            // reqwest is built without a bundled crypto provider; main installs
            // ring, and library users (tests) get it here.
            if rustls::crypto::CryptoProvider::get_default().is_none() {
                let _ = rustls::crypto::ring::default_provider().install_default();
            }
            // Registries redirect blob downloads to storage hosts; reqwest drops
            // the Authorization header on any redirect to another host, port or
            // scheme, and a redirect off https is refused outright.
            builder()
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    if attempt.url().scheme() != "https" {
                        let to = attempt.url().to_string();
                        attempt.error(format!("an https registry redirected to {to}; only https:// redirects are followed"))
                    } else if attempt.previous().len() >= MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                }))
                .build()
                .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
        });
        tls.as_ref().map_err(|m| setup_error(format!("cannot set up the HTTPS client: {m}"), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_needs_no_certificates_and_https_is_built_on_demand() {
        let t = Transport::new().unwrap();
        assert!(t.client_for("http://127.0.0.1:5000/v2/").is_ok());
        assert!(t.tls.get().is_none(), "no TLS client for plain HTTP");
        assert!(t.client_for("https://ghcr.io/v2/").is_ok());
        assert!(t.tls.get().is_some());
    }
}
