//! Answering a registry's 401: Basic credentials, or a bearer token from the
//! token service the challenge names. The pure parts (challenge parsing,
//! scopes, caches) are in [`crate::registry::auth`].

use reqwest::{Method, Response};

use super::answers::{protocol, read_limited};
use super::send::{Authz, Call, CallAuth};
use super::OciRegistry;
use crate::registry::auth::{self, Access, Challenge};
use crate::registry::endpoint;
use crate::registry::RegistryError;

impl OciRegistry {
    /// The login for `registry` as Basic, or none.
    pub(super) fn basic(&self, registry: &str) -> Authz {
        self.credentials.for_registry(registry).map_or(Authz::None, |l| Authz::Basic(l.username.clone(), l.password.clone()))
    }

    pub(super) fn has_login(&self, registry: &str) -> bool {
        self.credentials.for_registry(registry).is_some()
    }

    /// What the registry host asked for: Basic credentials or a bearer token.
    pub(super) async fn authorization(&self, call: &Call<'_>) -> Result<Authz, RegistryError> {
        match self.auth.host(call.repo.registry()) {
            None => Ok(Authz::None),
            Some(Challenge::Basic) => Ok(self.basic(call.repo.registry())),
            Some(Challenge::Bearer { realm, service }) => {
                let repo = call.repo.to_string();
                match self.auth.token(&repo, call.access) {
                    Some(t) => Ok(Authz::Bearer(t)),
                    None => Ok(Authz::Bearer(self.fetch_token(call, &realm, service.as_deref()).await?)),
                }
            }
        }
    }

    /// Learns from a 401's challenge; true when a retry with credentials may
    /// work. `sent` is what this request carried: what other requests learnt
    /// meanwhile (they run in parallel) does not decide for this one.
    pub(super) async fn answer_challenge(&self, resp: &Response, call: &Call<'_>, sent: &Authz) -> Result<bool, RegistryError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .collect();
        let Some(challenge) = challenges.into_iter().next() else {
            return Ok(false);
        };
        let registry = call.repo.registry();
        let repo = call.repo.to_string();
        self.auth.set_host(registry, challenge.clone());
        match challenge {
            Challenge::Basic => Ok(self.has_login(registry) && !matches!(sent, Authz::Basic(..))),
            Challenge::Bearer { realm, service } => {
                // A token we sent was refused (expired): fetch a fresh one.
                self.auth.drop_token(&repo, call.access);
                self.fetch_token(call, &realm, service.as_deref()).await?;
                Ok(true)
            }
        }
    }

    /// The token exchange: GET realm?scope=…&service=… with the registry's
    /// login as Basic credentials, or none for an anonymous pull. The login
    /// goes only to a token service on the registry's own host: a challenge
    /// naming another host (or a plain-http one off loopback) cannot make the
    /// client hand it over.
    pub(super) async fn fetch_token(&self, call: &Call<'_>, realm: &str, service: Option<&str>) -> Result<String, RegistryError> {
        let registry = call.repo.registry();
        let Some(mut url) = endpoint::token_service(realm) else {
            return Err(protocol(
                &call.what,
                401,
                &format!("the registry sent its token endpoint as {realm:?}; credentials only go to https:// token endpoints"),
            ));
        };
        let realm_host = url.host_str().unwrap_or_default().to_owned();
        let own_host = endpoint::same_host(&url, registry);
        let authz = if own_host { self.basic(registry) } else { Authz::None };
        let with_login = !matches!(authz, Authz::None);
        let access = if self.options.push && with_login { Access::Push } else { call.access };
        let repo = call.repo.to_string();
        // The request goes to the URL that was checked, not to the realm's text.
        url.query_pairs_mut().append_pair("scope", &access.scope(call.repo.path()));
        if let Some(s) = service {
            url.query_pairs_mut().append_pair("service", s);
        }
        let mut token_call = Call::new(Method::GET, url.into(), call.repo, access, format!("token for {repo}"));
        token_call.auth = CallAuth::TokenService;
        let resp = self.send_raw(&token_call, &authz, false).await.map_err(|e| match e {
            RegistryError::Denied { status, .. } => RegistryError::Denied {
                reference: repo.clone(),
                status,
                hint: if own_host || !self.has_login(registry) {
                    format!("the token service refused the credentials; {}", auth::denied_hint(registry, &repo, access, with_login))
                } else {
                    foreign_realm_hint(registry, &realm_host)
                },
            },
            other => other,
        })?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, 1024 * 1024, &token_call.what).await?;
        if status != 200 {
            return Err(protocol(&token_call.what, status, &String::from_utf8_lossy(&body)));
        }
        let token = auth::token_from_response(&body)
            .ok_or_else(|| protocol(&token_call.what, status, "the token service answered without a token"))?;
        self.auth.set_token(&repo, access, token.clone());
        Ok(token)
    }
}

fn foreign_realm_hint(registry: &str, realm_host: &str) -> String {
    format!(
        "{registry} sends clients to a token service on another host ({realm_host}); its login is not sent there, and an anonymous \
         token was refused"
    )
}
