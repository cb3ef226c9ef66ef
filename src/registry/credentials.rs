//! Who the registry client is, per registry host: the CLI's login
//! (`--registry-username` / `--registry-password`) for the hosts it names
//! (`--registry-login-host`, else the capsule repository's registry), or the
//! `auths` of a Docker `config.json` (what Kubernetes mounts from a
//! `kubernetes.io/dockerconfigjson` Secret, for `serve`).
//!
//! A login is only ever handed to the host it belongs to: the client asks
//! [`Credentials::for_registry`] with the registry of each request, and any
//! other registry, however it asks, gets none. The token exchange and
//! redirects have their own rules (see `oci/token.rs` and `transport.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;

/// The CLI's registry login, as `settings` resolves it from the flags, then
/// `REGISTRY_USERNAME` / `REGISTRY_PASSWORD`. Anonymous when neither is set.
/// The login goes only to the registry hosts in `hosts`, never to another
/// registry that asks for one.
#[derive(Clone, Default)]
pub struct RegistryCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
    /// `--registry-login-host` (or `REGISTRY_LOGIN_HOST`, comma-separated)
    /// when given, else the registry of the capsule repository the command
    /// works on: the one registry every command must log in to.
    pub hosts: Vec<String>,
}

impl std::fmt::Debug for RegistryCredentials {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// One login. Its Debug never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("username", &self.username).field("password", &"***").finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// By registry host (`ghcr.io`, `127.0.0.1:5000`), lowercase.
    by_host: BTreeMap<String, Login>,
    /// Where the logins came from, for the hint when a registry has none.
    origin: Origin,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Origin {
    #[default]
    Flags,
    DockerConfig(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("registry config {path}: cannot be read")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registry config {path}: is not a Docker config.json ({message}); mount a kubernetes.io/dockerconfigjson Secret, or write {{\"auths\": {{\"ghcr.io\": {{\"auth\": \"<base64 of user:token>\"}}}}}}")]
    Json { path: String, message: String },
    #[error("registry config {path}: auths.{host}: {message}")]
    Entry { path: String, host: String, message: String },
}

impl Credentials {
    /// The CLI's login, for the hosts it names (or none: anonymous).
    pub fn from_flags(c: &RegistryCredentials) -> Self {
        let login = match (&c.username, &c.password) {
            (Some(u), Some(p)) => Some(Login { username: u.clone(), password: p.clone() }),
            // A token alone works as the password for GHCR (any user name).
            (None, Some(p)) => Some(Login { username: "release-capsule".into(), password: p.clone() }),
            _ => None,
        };
        let by_host = login.map(|l| c.hosts.iter().map(|h| (h.to_ascii_lowercase(), l.clone())).collect()).unwrap_or_default();
        Self { by_host, origin: Origin::Flags }
    }

    /// The login for requests to `registry` (`host[:port]`); none for a host
    /// no login names.
    pub fn for_registry(&self, registry: &str) -> Option<&Login> {
        self.by_host.get(&registry.to_ascii_lowercase())
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// Why `registry` gets no login although there are logins: what to change.
    pub fn missing_for(&self, registry: &str) -> Option<String> {
        if self.is_empty() || self.for_registry(registry).is_some() {
            return None;
        }
        let hosts = self.hosts().collect::<Vec<_>>().join(", ");
        Some(match &self.origin {
            Origin::Flags => format!(
                "the login given goes to {hosts} only; if it is for {registry} too, add --registry-login-host {registry} (once per registry; REGISTRY_LOGIN_HOST takes a comma-separated list)"
            ),
            Origin::DockerConfig(path) => format!("registry config {path} has logins for {hosts} only; add an auths entry for {registry}"),
        })
    }

    /// The hosts a Docker config holds logins for.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.by_host.keys().map(String::as_str)
    }

    /// Reads a Docker `config.json`. Only `auths` entries are used: credential
    /// helpers (`credsStore`, `credHelpers`) are programs, which a static
    /// binary in an empty image cannot run; they are reported by
    /// [`Self::ignored_helpers`] so the caller can warn.
    pub fn from_docker_config(path: &Path) -> Result<(Self, Vec<String>), CredentialsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read { path: shown.clone(), source })?;
        Self::parse_docker_config(&text, &shown)
    }

    /// [`Self::from_docker_config`] on text; also the names of ignored helpers.
    pub fn parse_docker_config(text: &str, path: &str) -> Result<(Self, Vec<String>), CredentialsError> {
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
            #[serde(default, rename = "credsStore")]
            creds_store: Option<String>,
            #[serde(default, rename = "credHelpers")]
            cred_helpers: BTreeMap<String, String>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            auth: Option<String>,
            username: Option<String>,
            password: Option<String>,
            identitytoken: Option<String>,
        }
        let json = |message: String| CredentialsError::Json { path: path.to_owned(), message };
        let config: Config = serde_json::from_str(text).map_err(|e| json(e.to_string()))?;
        let mut by_host = BTreeMap::new();
        for (key, entry) in config.auths {
            let host = host_of_key(&key);
            let bad = |message: &str| CredentialsError::Entry { path: path.to_owned(), host: key.clone(), message: message.to_owned() };
            if entry.identitytoken.is_some() && entry.auth.is_none() && entry.password.is_none() {
                return Err(bad("holds an identitytoken (an OAuth refresh token from `docker login` with a credential helper); use a username and token instead"));
            }
            let login = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| bad("auth is not base64 of \"user:password\""))?;
                    let text = String::from_utf8(decoded).map_err(|_| bad("auth is not base64 of UTF-8 \"user:password\""))?;
                    let (u, p) = text.split_once(':').ok_or_else(|| bad("auth decodes to no \"user:password\" (no colon)"))?;
                    Login { username: u.to_owned(), password: p.to_owned() }
                }
                (None, Some(username), Some(password)) => Login { username, password },
                _ => return Err(bad("has neither auth nor username and password")),
            };
            // Keys that differ only in form (`ghcr.io`, `https://ghcr.io/v2/`) or in a
            // path (podman's `quay.io/org`) name one host, and one login goes to a
            // host: two different ones are refused, not one picked by key order.
            if let Some((other, _)) = by_host.get(&host).filter(|(_, l)| *l != login) {
                let message = format!("names the registry host {host}, as auths.{other} does, with another login; keep one of the two");
                return Err(bad(&message));
            }
            by_host.entry(host).or_insert((key.clone(), login));
        }
        let by_host = by_host.into_iter().map(|(host, (_, login))| (host, login)).collect();
        let mut helpers: Vec<String> = config.creds_store.into_iter().map(|s| format!("credsStore {s}")).collect();
        helpers.extend(config.cred_helpers.into_iter().map(|(host, helper)| format!("credHelpers.{host} {helper}")));
        Ok((Self { by_host, origin: Origin::DockerConfig(path.to_owned()) }, helpers))
    }
}

/// `https://index.docker.io/v1/`, `ghcr.io`, `https://ghcr.io/v2/` → the host.
fn host_of_key(key: &str) -> String {
    let rest = key.trim().split_once("://").map_or(key.trim(), |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    // Docker Hub's legacy key names its index, not its registry.
    if host == "index.docker.io" {
        "registry-1.docker.io".to_owned()
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn docker_config_logins_by_host() {
        let text = format!(
            r#"{{"auths": {{
                "ghcr.io": {{"auth": "{}"}},
                "https://registry.example.com/v2/": {{"username": "bot", "password": "pw"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}}
            }}, "credHelpers": {{"gcr.io": "gcloud"}}}}"#,
            b64("octocat:ghp_secret:with:colons"),
            b64("hub:x")
        );
        let (c, helpers) = Credentials::parse_docker_config(&text, "config.json").unwrap();
        let ghcr = c.for_registry("GHCR.io").unwrap();
        assert_eq!((ghcr.username.as_str(), ghcr.password.as_str()), ("octocat", "ghp_secret:with:colons"));
        assert_eq!(c.for_registry("registry.example.com").unwrap().username, "bot");
        assert_eq!(c.for_registry("registry-1.docker.io").unwrap().username, "hub");
        assert!(c.for_registry("quay.io").is_none(), "no login for a host the config does not name");
        assert_eq!(helpers, ["credHelpers.gcr.io gcloud"]);
        assert!(!format!("{c:?}").contains("ghp_secret"), "Debug shows no password");
    }

    #[test]
    fn two_logins_for_one_host_are_refused_rather_than_one_picked() {
        let text = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}, "https://ghcr.io/v2/": {{"auth": "{}"}}}}}}"#,
            b64("a:first-secret"),
            b64("b:second-secret")
        );
        let e = format!("{:#}", anyhow::Error::new(Credentials::parse_docker_config(&text, "config.json").unwrap_err()));
        assert!(e.contains("auths.https://ghcr.io/v2/: names the registry host ghcr.io, as auths.ghcr.io does, with another login"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let same = format!(r#"{{"auths": {{"ghcr.io": {{"auth": "{0}"}}, "https://ghcr.io": {{"auth": "{0}"}}}}}}"#, b64("a:s"));
        let (c, _) = Credentials::parse_docker_config(&same, "config.json").unwrap();
        assert_eq!(c.hosts().collect::<Vec<_>>(), ["ghcr.io"], "the same login twice is one login");
    }

    #[test]
    fn bad_configs_name_the_entry_and_never_the_secret() {
        let cases = [
            ("{not json", "is not a Docker config.json"),
            (r#"{"auths": {"ghcr.io": {"auth": "%%%"}}}"#, "auths.ghcr.io: auth is not base64"),
            (&format!(r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#, b64("nocolon-secret")), "no colon"),
            (r#"{"auths": {"ghcr.io": {"identitytoken": "t"}}}"#, "identitytoken"),
            (r#"{"auths": {"ghcr.io": {}}}"#, "neither auth nor username"),
        ];
        for (text, expected) in cases {
            let e = format!("{:#}", anyhow::Error::new(Credentials::parse_docker_config(text, "/etc/rc/config.json").unwrap_err()));
            assert!(e.contains(expected) && e.contains("/etc/rc/config.json"), "{e}");
            assert!(!e.contains("nocolon-secret"), "{e}");
        }
    }

    #[test]
    fn flags_log_in_to_the_hosts_they_name_only() {
        let flags = RegistryCredentials { username: None, password: Some("tok".into()), hosts: vec!["GHCR.io".into()] };
        let c = Credentials::from_flags(&flags);
        assert_eq!(c.for_registry("ghcr.io").unwrap().password, "tok");
        assert!(c.for_registry("registry.example").is_none(), "another registry that asks gets nothing");
        let hint = c.missing_for("registry.example").unwrap();
        assert!(hint.contains("--registry-login-host registry.example (once per registry;") && !hint.contains("tok"), "{hint}");
        assert_eq!(c.missing_for("ghcr.io"), None);
        assert!(Credentials::from_flags(&RegistryCredentials::default()).is_empty());
        let (config, _) =
            Credentials::parse_docker_config(r#"{"auths": {"ghcr.io": {"username": "u", "password": "p"}}}"#, "c.json").unwrap();
        assert!(config.missing_for("quay.io").unwrap().contains("registry config c.json has logins for ghcr.io only"));
    }
}
