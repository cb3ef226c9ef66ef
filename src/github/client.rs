//! [`ChecksApi`] over octocrab, against `GITHUB_API_URL` (GitHub Enterprise
//! Server works: its `/api/v3` prefix is kept). octocrab is built without its
//! retry layer, which would re-send POSTs; [`super::retry::Policy`] decides.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::Method;
use octocrab::Octocrab;
use serde::Serialize;

use super::retry::{Answer, Decision, Outcome, Policy};
use super::{CheckRunCreate, CheckRunUpdate, ChecksApi, CommitStatus, GitHubError, Token};
use crate::core::ident::GitSha;
use crate::core::timestamp::Created;

/// Where the client's progress lines go: `(debug_only, line)`.
pub type Notify = Arc<dyn Fn(bool, &str) + Send + Sync>;

pub struct OctocrabGitHub {
    client: Octocrab,
    owner: String,
    repo: String,
    policy: Policy,
    notify: Notify,
}

/// Whether a transport error happened before the request left: only a
/// refused connection proves that.
fn classify_transport(e: &octocrab::Error) -> Outcome {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut text = e.to_string();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Outcome::NotSent(format!("{text}: {io}"));
            }
        }
        if !text.contains(&err.to_string()) {
            text = format!("{text}: {err}");
        }
        source = err.source();
    }
    Outcome::MaybeSent(text)
}

fn header(res: &http::Response<impl Sized>, name: &str) -> Option<String> {
    res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

impl OctocrabGitHub {
    pub fn new(api_url: &str, token: Option<&Token>, owner: &str, repo: &str, notify: Notify) -> Result<Self, GitHubError> {
        let unexpected = |e: octocrab::Error| GitHubError::Unexpected { operation: "GitHub client", message: e.to_string() };
        let mut builder = octocrab::OctocrabBuilder::new()
            .base_uri(api_url)
            .map_err(unexpected)?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .set_write_timeout(Some(Duration::from_secs(30)))
            // octocrab already sends User-Agent and X-GitHub-Api-Version.
            .add_header(http::header::ACCEPT, "application/vnd.github+json".into());
        if let Some(token) = token {
            builder = builder.personal_token(token.expose().to_owned());
        }
        let client = builder.build().map_err(unexpected)?;
        Ok(Self { client, owner: owner.to_owned(), repo: repo.to_owned(), policy: Policy::default(), notify })
    }

    /// `owner/repo`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    pub(super) fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}/{rest}", self.owner, self.repo)
    }

    async fn send_once<B: Serialize + Sync>(&self, method: &Method, path: &str, body: Option<&B>) -> Outcome {
        let sent = match *method {
            Method::POST => self.client._post(path, body).await,
            Method::PATCH => self.client._patch(path, body).await,
            _ => self.client._get(path).await,
        };
        let res = match sent {
            Ok(res) => res,
            Err(e) => return classify_transport(&e),
        };
        let mut answer = Answer {
            status: res.status().as_u16(),
            retry_after: header(&res, "retry-after"),
            ratelimit_remaining: header(&res, "x-ratelimit-remaining"),
            ratelimit_reset: header(&res, "x-ratelimit-reset"),
            body: String::new(),
        };
        match self.client.body_to_string(res).await {
            Ok(body) => answer.body = body,
            Err(e) => return Outcome::MaybeSent(format!("reading the answer: {e}")),
        }
        Outcome::Answer(answer)
    }

    /// Sends until the policy says done or give up; the successful answer.
    pub(super) async fn call<B: Serialize + Sync>(
        &self,
        operation: &'static str,
        permission: &'static str,
        method: Method,
        path: &str,
        body: Option<&B>,
        replayable: bool,
    ) -> Result<Answer, GitHubError> {
        let mut attempts = 0;
        let mut waited = Duration::ZERO;
        loop {
            attempts += 1;
            let outcome = self.send_once(&method, path, body).await;
            let shown = match &outcome {
                Outcome::Answer(a) => a.status.to_string(),
                Outcome::NotSent(e) | Outcome::MaybeSent(e) => e.clone(),
            };
            (self.notify)(true, &format!("GitHub {method} {path} (attempt {attempts}): {shown}"));
            match (self.policy.decide(attempts, waited, replayable, &outcome, crate::clock::now_unix()), outcome) {
                // The policy says Done only for a successful answer.
                (Decision::Done, Outcome::Answer(a)) => return Ok(a),
                (Decision::Retry(wait), _) => {
                    (self.notify)(false, &format!("{operation}: GitHub answered {shown}; trying again in {}s", wait.as_secs()));
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                (_, outcome) => return Err(final_error(operation, permission, attempts, outcome)),
            }
        }
    }

    /// A read of `/repos/{owner}/{repo}/{rest}`: safe to send again, so retried
    /// like any replayable request.
    pub(super) async fn get(&self, operation: &'static str, rest: &str) -> Result<Answer, GitHubError> {
        self.call(operation, "contents", Method::GET, &self.route(rest), None::<&()>, true).await
    }

    /// The committer date of `sha` (`GET /repos/{owner}/{repo}/commits/{sha}`);
    /// `None` when GitHub does not know the commit.
    pub async fn committer_date(&self, sha: &GitSha) -> Result<Option<Created>, GitHubError> {
        const OP: &str = "get commit";
        let answer = match self.get(OP, &format!("commits/{sha}")).await {
            Ok(a) => a,
            Err(GitHubError::Forbidden { status: 404, .. }) | Err(GitHubError::Rejected { status: 422, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let v: serde_json::Value =
            serde_json::from_str(&answer.body).map_err(|e| GitHubError::Unexpected { operation: OP, message: format!("not JSON: {e}") })?;
        let Some(date) = v.pointer("/commit/committer/date").and_then(|d| d.as_str()) else {
            return Ok(None);
        };
        date.parse()
            .map(Some)
            .map_err(|e: crate::core::timestamp::TimestampError| GitHubError::Unexpected { operation: OP, message: e.to_string() })
    }
}

fn final_error(operation: &'static str, permission: &'static str, attempts: u32, outcome: Outcome) -> GitHubError {
    match outcome {
        Outcome::Answer(a) if a.rate_limit_wait(crate::clock::now_unix()).is_some() => {
            GitHubError::RateLimited { operation, message: a.message(), attempts }
        }
        Outcome::Answer(a) if matches!(a.status, 401 | 403 | 404) => {
            GitHubError::Forbidden { operation, status: a.status, message: a.message(), permission }
        }
        Outcome::Answer(a) => GitHubError::Rejected { operation, status: a.status, message: a.message() },
        Outcome::NotSent(message) => GitHubError::Transport { operation, message },
        Outcome::MaybeSent(message) => GitHubError::Transport {
            operation,
            message: format!("{message} (not sent again: it may have arrived, and sending it twice would duplicate it)"),
        },
    }
}

impl ChecksApi for OctocrabGitHub {
    fn create_check_run<'a>(&'a self, run: &'a CheckRunCreate) -> BoxFuture<'a, Result<u64, GitHubError>> {
        async move {
            const OP: &str = "create check run";
            let answer = self.call(OP, "checks", Method::POST, &self.route("check-runs"), Some(run), false).await?;
            serde_json::from_str::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                .ok_or_else(|| GitHubError::Unexpected { operation: OP, message: "the answer has no check run id".into() })
        }
        .boxed()
    }

    fn update_check_run<'a>(&'a self, id: u64, update: &'a CheckRunUpdate) -> BoxFuture<'a, Result<(), GitHubError>> {
        async move {
            let path = self.route(&format!("check-runs/{id}"));
            self.call("update check run", "checks", Method::PATCH, &path, Some(update), update.is_replayable()).await.map(drop)
        }
        .boxed()
    }

    fn create_commit_status<'a>(&'a self, sha: &'a GitSha, status: &'a CommitStatus) -> BoxFuture<'a, Result<(), GitHubError>> {
        async move {
            let path = self.route(&format!("statuses/{sha}"));
            self.call("create commit status", "statuses", Method::POST, &path, Some(status), false).await.map(drop)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::github::{CheckOutput, StatusState};

    fn quiet() -> Notify {
        Arc::new(|_, _| {})
    }

    fn fast() -> Policy {
        Policy { backoff: Duration::from_millis(10), ..Policy::default() }
    }

    fn run() -> CheckRunCreate {
        CheckRunCreate {
            name: "release-capsule".into(),
            head_sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
            status: "in_progress",
            started_at: "2026-01-01T00:00:00Z".into(),
            details_url: None,
            external_id: None,
            output: CheckOutput { title: "t".into(), summary: "s".into(), text: None, annotations: vec![] },
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    /// A server that reads each request whole, then answers with `answer(n)`
    /// (`None`: close the connection without a word). Counts requests.
    fn server(answer: impl Fn(usize) -> Option<String> + Send + 'static) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (count.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                loop {
                    let n = stream.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0usize);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let n = c.fetch_add(1, Ordering::SeqCst);
                r.lock().unwrap().push(String::from_utf8_lossy(&buf).to_string());
                if let Some(body) = answer(n) {
                    let _ = write!(stream, "{body}");
                }
            }
        });
        (url, count, requests)
    }

    fn ok_json(status: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
    }

    #[test]
    fn a_create_whose_connection_drops_after_sending_is_not_resent() {
        let (url, count, _) = server(|_| None);
        let err = block_on(async {
            let gh = OctocrabGitHub::new(&url, Some(&Token::new("t".into())), "acme", "app", quiet()).unwrap().with_policy(fast());
            gh.create_check_run(&run()).await.unwrap_err()
        });
        assert!(matches!(err, GitHubError::Transport { .. }), "{err}");
        assert!(err.to_string().contains("not sent again"), "{err}");
        assert_eq!(count.load(Ordering::SeqCst), 1, "exactly one POST");
    }

    #[test]
    fn a_refused_connection_is_retried_because_nothing_was_sent() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let attempts = Arc::new(AtomicUsize::new(0));
        let a = attempts.clone();
        let notify: Notify = Arc::new(move |debug, _| {
            if debug {
                a.fetch_add(1, Ordering::SeqCst);
            }
        });
        let err = block_on(async {
            let gh = OctocrabGitHub::new(&format!("http://127.0.0.1:{port}"), None, "acme", "app", notify).unwrap().with_policy(fast());
            gh.create_check_run(&run()).await.unwrap_err()
        });
        assert!(matches!(err, GitHubError::Transport { .. }), "{err}");
        assert_eq!(attempts.load(Ordering::SeqCst), 4, "retried up to the attempt limit");
    }

    #[test]
    fn replayable_updates_are_retried_after_a_drop_and_headers_are_right() {
        let (url, count, requests) = server(|n| (n > 0).then(|| ok_json("200 OK", r#"{"id":30000000001}"#)));
        let done = CheckRunUpdate {
            status: Some("completed"),
            conclusion: Some(super::super::Conclusion::Success),
            completed_at: Some("2026-01-01T00:00:00Z".into()),
            output: CheckOutput { title: "t".into(), summary: "s".into(), text: None, annotations: vec![] },
        };
        block_on(async {
            let gh = OctocrabGitHub::new(&format!("{url}/api/v3"), Some(&Token::new("ghs_tok".into())), "acme", "app", quiet())
                .unwrap()
                .with_policy(fast());
            gh.update_check_run(30_000_000_001, &done).await.unwrap();
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
        let req = requests.lock().unwrap()[1].clone();
        // GHES: the /api/v3 prefix is kept; a 64-bit id survives.
        assert!(req.starts_with("PATCH /api/v3/repos/acme/app/check-runs/30000000001 HTTP/1.1"), "{req}");
        let lower = req.to_ascii_lowercase();
        assert!(lower.contains("authorization: bearer ghs_tok"), "{req}");
        assert!(lower.contains("user-agent: "), "{req}");
        assert!(lower.contains("x-github-api-version: 2022-11-28"), "{req}");
        assert_eq!(lower.matches("user-agent:").count(), 1);
    }

    #[test]
    fn statuses_are_created_once_and_commit_dates_read() {
        let (url, count, requests) = server(|n| {
            Some(match n {
                0 => ok_json("201 Created", r#"{"id":1,"state":"success"}"#),
                _ => ok_json("200 OK", r#"{"sha":"x","commit":{"committer":{"date":"2026-11-20T12:11:12+02:00"}}}"#),
            })
        });
        let sha: GitSha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821".parse().unwrap();
        block_on(async {
            let gh = OctocrabGitHub::new(&url, Some(&Token::new("t".into())), "acme", "app", quiet()).unwrap();
            let status = CommitStatus { state: StatusState::Success, target_url: None, description: "d".into(), context: "c".into() };
            gh.create_commit_status(&sha, &status).await.unwrap();
            let date = gh.committer_date(&sha).await.unwrap().unwrap();
            assert_eq!(date.to_string(), "2026-11-20T10:11:12Z");
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(requests.lock().unwrap()[1].starts_with(&format!("GET /repos/acme/app/commits/{sha} ")));
    }
}
