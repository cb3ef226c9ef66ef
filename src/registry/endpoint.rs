//! Where requests for a registry go. Loopback registries (localhost,
//! 127.0.0.0/8, [::1]) are spoken to over plain HTTP, as Docker does for its
//! default insecure registries; every other host over HTTPS, with no way to
//! turn that off.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::core::percent::percent_encode;

/// The host of `registry` (`host[:port]`, IPv6 in brackets), without the port.
pub fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

pub fn scheme_for(registry: &str) -> &'static str {
    if is_loopback(registry) {
        "http"
    } else {
        "https"
    }
}

/// `scheme://registry`, the origin every API path hangs off.
pub fn origin(registry: &str) -> String {
    format!("{}://{registry}", scheme_for(registry))
}

/// An upload `Location` (absolute, or a path on the registry) as a full URL.
pub fn resolve_location(origin: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        format!("{origin}/{location}")
    }
}

/// Whether `url` points at the registry itself (same scheme, host and port),
/// and so may carry its credentials. Storage redirects and foreign upload
/// locations never see them.
pub fn same_origin(url: &str, origin: &str) -> bool {
    url.strip_prefix(origin).is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

/// A token service a registry named in its challenge (`realm`), parsed as the
/// HTTP client parses it (WHATWG rules, under which
/// `https://evil.example\@ghcr.io/token` is a URL on evil.example), so the
/// host checked is the host asked; `None` unless it is https, or http on a
/// loopback host.
pub fn token_service(realm: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(realm).ok()?;
    let loopback = url.host_str().is_some_and(is_loopback);
    (url.scheme() == "https" || (url.scheme() == "http" && loopback)).then_some(url)
}

/// Whether `url` (a token service) is on the host of `registry`
/// (`host[:port]`): same host name and port, the scheme's default port made
/// explicit.
pub fn same_host(url: &reqwest::Url, registry: &str) -> bool {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else { return false };
    let registry_default = if scheme_for(registry) == "https" { "443" } else { "80" };
    format!("{host}:{port}") == host_and_port(registry, registry_default)
}

/// `host[:port]` (IPv6 in brackets) as `host:port`, lowercase.
fn host_and_port(authority: &str, default_port: &str) -> String {
    let a = authority.to_ascii_lowercase();
    let (host, port) = match a.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((h, after)) => (format!("[{h}]"), after.strip_prefix(':').unwrap_or("").to_owned()),
        None => match a.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.to_owned()),
            None => (a.clone(), String::new()),
        },
    };
    format!("{host}:{}", if port.is_empty() { default_port } else { &port })
}

/// Appends `key=value` to a URL that may already have a query (upload
/// locations carry state in theirs).
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", percent_encode(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_use_plain_http() {
        for r in
            ["localhost", "localhost:5000", "LOCALHOST:1", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "[::1]", "[0:0:0:0:0:0:0:1]:80"]
        {
            assert!(is_loopback(r), "{r}");
            assert_eq!(scheme_for(r), "http", "{r}");
        }
        for r in ["ghcr.io", "ghcr.io:443", "128.0.0.1:5000", "localhost.example.com", "10.0.0.1:5000", "[::2]:5000", "127.0.0.1.nip.io"] {
            assert!(!is_loopback(r), "{r}");
            assert_eq!(scheme_for(r), "https", "{r}");
        }
        assert_eq!(origin("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(origin("ghcr.io"), "https://ghcr.io");
    }

    #[test]
    fn token_services_on_the_registry_host_only() {
        let same_host = |realm: &str, registry: &str| token_service(realm).is_some_and(|url| same_host(&url, registry));
        assert!(same_host("https://ghcr.io/token", "ghcr.io"));
        assert!(same_host("https://GHCR.io:443/token?x=1", "ghcr.io"));
        assert!(same_host("http://127.0.0.1:5000/token", "127.0.0.1:5000"));
        assert!(same_host("http://[::1]:5000/token", "[::1]:5000"));
        assert!(!same_host("http://127.0.0.1:5001/token", "127.0.0.1:5000"), "another port is another service");
        assert!(!same_host("https://auth.docker.io/token", "registry-1.docker.io"));
        assert!(!same_host("https://ghcr.io.evil.example/token", "ghcr.io"));
        assert!(!same_host("https://ghcr.io@evil.example/token", "ghcr.io"), "userinfo does not make a host");
        assert!(!same_host("ghcr.io/token", "ghcr.io"));
        // What the HTTP client would really ask: a `\` ends the host, so these go to evil.example.
        assert!(!same_host("https://evil.example\\@ghcr.io/token", "ghcr.io"), "a backslash ends the host");
        assert!(!same_host("https://evil.example\\@ghcr.io\\token", "ghcr.io"));
        assert!(!same_host("http://127.0.0.1:5001\\@127.0.0.1:5000/token", "127.0.0.1:5000"));
    }

    #[test]
    fn credentials_go_to_https_token_services_or_loopback_ones() {
        assert_eq!(token_service("https://evil.example\\@ghcr.io/token").unwrap().host_str(), Some("evil.example"));
        assert!(token_service("http://127.0.0.1:5000/token").is_some());
        assert!(token_service("http://[::1]/token").is_some());
        for refused in ["http://ghcr.io/token", "http://127.0.0.1.nip.io/token", "ftp://ghcr.io/token", "/token", ""] {
            assert!(token_service(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn locations_and_origins() {
        let o = "http://127.0.0.1:5000";
        assert_eq!(resolve_location(o, "/v2/a/blobs/uploads/x?_state=1"), "http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=1");
        assert_eq!(resolve_location(o, "https://s3.example/u"), "https://s3.example/u");
        assert!(same_origin("http://127.0.0.1:5000/v2/", o));
        assert!(!same_origin("http://127.0.0.1:50000/v2/", o), "a different port is a different origin");
        assert!(!same_origin("https://s3.example/u", o));
        assert_eq!(with_query("http://h/u?_state=a", "digest", "sha256:ab"), "http://h/u?_state=a&digest=sha256%3Aab");
        assert_eq!(with_query("http://h/u", "digest", "sha256:ab"), "http://h/u?digest=sha256%3Aab");
    }
}
