//! Registry authentication as Docker does it: a request goes out as it is; a
//! 401 carries a `WWW-Authenticate` challenge, either `Basic` (htpasswd
//! registries) or `Bearer realm=…,service=…` (GHCR, Docker Hub), for which a
//! token is fetched from the realm (with the user's credentials, or none for
//! an anonymous pull) and the request is sent again. What a host asked for is
//! remembered, so later requests carry credentials from the start and cost no
//! extra round trip.
//!
//! This module holds the pure parts (challenge parsing, scopes, token
//! responses) and the caches; the requests themselves go through the client,
//! so the token exchange gets the same timeouts and retries as everything else.

use std::collections::HashMap;
use std::sync::Mutex;

/// What a repository request needs permission for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Pull,
    Push,
}

impl Access {
    pub fn scope(self, repo_path: &str) -> String {
        match self {
            Access::Pull => format!("repository:{repo_path}:pull"),
            Access::Push => format!("repository:{repo_path}:pull,push"),
        }
    }
}

/// How a registry host wants to be authenticated, learnt from its first 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// The challenges in a `WWW-Authenticate` value (RFC 9110 section 11.6.1),
/// Bearer first: when a registry offers both, the token flow is the one that
/// works with scoped tokens.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    for (scheme, params) in split_challenges(header) {
        let param = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(realm) = param("realm").filter(|r| !r.is_empty()) {
                out.push(Challenge::Bearer { realm, service: param("service") });
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            out.push(Challenge::Basic);
        }
    }
    out.sort_by_key(|c| matches!(c, Challenge::Basic));
    out
}

type Params = Vec<(String, String)>;

/// `scheme k=v, k="v", scheme2 k=v` → [(scheme, params)]. A token not followed
/// by `=` starts the next challenge.
fn split_challenges(header: &str) -> Vec<(String, Params)> {
    let b = header.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, Params)> = Vec::new();
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c);
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        &header[start..*i]
    };
    loop {
        skip(&mut i, b" \t,");
        let scheme = token(&mut i);
        if scheme.is_empty() {
            break;
        }
        let mut params = Vec::new();
        loop {
            skip(&mut i, b" \t");
            let save = i;
            let key = token(&mut i);
            skip(&mut i, b" \t");
            if key.is_empty() || i >= b.len() || b[i] != b'=' {
                i = save;
                break;
            }
            i += 1;
            skip(&mut i, b" \t");
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Push whole UTF-8 characters, not bytes.
                    let ch = header[i..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i = (i + 1).min(b.len()); // the closing quote, if any
                v
            } else {
                token(&mut i).to_owned()
            };
            params.push((key.to_owned(), value));
            skip(&mut i, b" \t");
            if i < b.len() && b[i] == b',' {
                i += 1;
            }
        }
        out.push((scheme.to_owned(), params));
        if i >= b.len() {
            break;
        }
        if !is_tchar(b[i]) && !b" \t,".contains(&b[i]) {
            break; // garbage: stop rather than loop
        }
    }
    out
}

/// The token in a token endpoint's answer: `token`, or the OAuth2 name
/// `access_token` (the distribution token spec allows either).
pub fn token_from_response(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
    }
    let r: TokenResponse = serde_json::from_slice(body).ok()?;
    r.token.or(r.access_token).filter(|t| !t.is_empty())
}

/// What the client has learnt about hosts and the tokens it holds. Tokens are
/// kept per repository and access, as they are scoped that way.
#[derive(Debug, Default)]
pub struct AuthCache {
    hosts: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, Access), String>>,
}

impl AuthCache {
    pub fn host(&self, host: &str) -> Option<Challenge> {
        self.hosts.lock().ok()?.get(host).cloned()
    }
    pub fn set_host(&self, host: &str, challenge: Challenge) {
        if let Ok(mut h) = self.hosts.lock() {
            h.insert(host.to_owned(), challenge);
        }
    }
    /// A token good for `access` on `repo`; a push token also serves pulls.
    pub fn token(&self, repo: &str, access: Access) -> Option<String> {
        let t = self.tokens.lock().ok()?;
        t.get(&(repo.to_owned(), access))
            .or_else(|| (access == Access::Pull).then(|| t.get(&(repo.to_owned(), Access::Push))).flatten())
            .cloned()
    }
    pub fn set_token(&self, repo: &str, access: Access, token: String) {
        if let Ok(mut t) = self.tokens.lock() {
            t.insert((repo.to_owned(), access), token);
        }
    }
    /// Forgets a token the registry refused (expired), so the next try fetches a new one.
    pub fn drop_token(&self, repo: &str, access: Access) {
        if let Ok(mut t) = self.tokens.lock() {
            t.remove(&(repo.to_owned(), access));
            if access == Access::Pull {
                t.remove(&(repo.to_owned(), Access::Push));
            }
        }
    }
}

/// What to do about a 401/403, in words: which permission or setting to fix.
pub fn denied_hint(registry: &str, repo: &str, access: Access, has_credentials: bool) -> String {
    let ghcr = registry == "ghcr.io";
    if !has_credentials {
        let example = if ghcr { " (in a workflow: ${{ github.actor }} and ${{ secrets.GITHUB_TOKEN }})" } else { "" };
        return format!(
            "no credentials were given; pass --registry-username and --registry-password, or set REGISTRY_USERNAME and REGISTRY_PASSWORD{example}"
        );
    }
    match (ghcr, access) {
        (true, Access::Push) => format!(
            "the token may not write to {repo}: give the workflow `permissions: packages: write`, and if the package already exists, \
             open its settings on GitHub, \"Manage Actions access\", and give this repository the Write role \
             (a personal access token needs the write:packages scope)"
        ),
        (true, Access::Pull) => format!(
            "the token may not read {repo}: give the workflow `permissions: packages: read`, and in the package's settings, \
             \"Manage Actions access\", add this repository (a personal access token needs the read:packages scope)"
        ),
        (false, Access::Push) => {
            format!(
                "check --registry-username/--registry-password (REGISTRY_USERNAME/REGISTRY_PASSWORD) and that this user may push to {repo}"
            )
        }
        (false, Access::Pull) => {
            format!(
                "check --registry-username/--registry-password (REGISTRY_USERNAME/REGISTRY_PASSWORD) and that this user may pull {repo}"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ghcr_and_distribution_challenges() {
        let ghcr = r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/app:pull""#;
        assert_eq!(
            parse_challenges(ghcr),
            vec![Challenge::Bearer { realm: "https://ghcr.io/token".into(), service: Some("ghcr.io".into()) }]
        );
        assert_eq!(parse_challenges(r#"Basic realm="release-capsule-test""#), vec![Challenge::Basic]);
        // Two challenges in one value, Basic listed first: Bearer is preferred.
        let both = r#"Basic realm="x", Bearer realm="https://auth.example/token", service=example"#;
        assert_eq!(
            parse_challenges(both),
            vec![Challenge::Bearer { realm: "https://auth.example/token".into(), service: Some("example".into()) }, Challenge::Basic]
        );
        // Escapes inside quoted strings, odd spacing and case.
        let odd = r#"bearer   Realm = "https://a.example/t\"x" ,SERVICE=svc"#;
        assert_eq!(parse_challenges(odd), vec![Challenge::Bearer { realm: "https://a.example/t\"x".into(), service: Some("svc".into()) }]);
        // A Bearer challenge without a realm is useless; garbage yields nothing.
        assert_eq!(parse_challenges("Bearer service=x"), vec![]);
        assert_eq!(parse_challenges("\"}{"), vec![]);
        assert_eq!(parse_challenges(""), vec![]);
        assert_eq!(
            parse_challenges(r#"Bearer realm="unterminated"#),
            vec![Challenge::Bearer { realm: "unterminated".into(), service: None }]
        );
    }

    #[test]
    fn scopes_and_tokens() {
        assert_eq!(Access::Pull.scope("acme/app"), "repository:acme/app:pull");
        assert_eq!(Access::Push.scope("acme/app"), "repository:acme/app:pull,push");
        assert_eq!(token_from_response(br#"{"token":"t1","expires_in":300}"#).as_deref(), Some("t1"));
        assert_eq!(token_from_response(br#"{"access_token":"t2"}"#).as_deref(), Some("t2"));
        assert_eq!(token_from_response(br#"{"token":""}"#), None);
        assert_eq!(token_from_response(b"<html>"), None);
    }

    #[test]
    fn push_tokens_serve_pulls() {
        let c = AuthCache::default();
        c.set_token("a/b", Access::Push, "p".into());
        assert_eq!(c.token("a/b", Access::Pull).as_deref(), Some("p"));
        assert_eq!(c.token("a/c", Access::Pull), None);
        c.drop_token("a/b", Access::Pull);
        assert_eq!(c.token("a/b", Access::Push), None);
    }

    #[test]
    fn ghcr_hints_name_the_permission_and_the_setting() {
        let h = denied_hint("ghcr.io", "ghcr.io/acme/app", Access::Push, true);
        assert!(h.contains("packages: write") && h.contains("Manage Actions access"), "{h}");
        let h = denied_hint("ghcr.io", "ghcr.io/acme/app", Access::Push, false);
        assert!(h.contains("--registry-username") && h.contains("GITHUB_TOKEN"), "{h}");
        let h = denied_hint("127.0.0.1:5000", "127.0.0.1:5000/a", Access::Push, true);
        assert!(h.contains("may push to 127.0.0.1:5000/a"), "{h}");
    }
}
