//! Rendering, by Helm's and Kustomize's own binaries (the ecosystem has no
//! library for them): `helm template` with exactly the flags Kargo's
//! `helm-template` step amounts to, and `kustomize build`.
//!
//! Kargo's step (pkg/promotion/runner/builtin/helm_template_runner.go) runs
//! Helm's install action client-only and dry-run, as `helm template` does,
//! with the release name, the namespace, the values files and each
//! `setValues` entry (`literal: true` being `--set-literal`). CRDs are left
//! out and hooks kept, as `helm template`'s defaults do.
//!
//! The tools run in an environment of their own (PATH, and a private HOME and
//! Helm directories), so a runner's HELM_*, KUBECONFIG or plugins cannot
//! change what they render, and each run has a time limit.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Where a program is looked for when PATH is unset (a container from
/// `scratch` may have none).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// A render's output beyond this is refused rather than held in memory.
const MAX_OUTPUT: usize = 256 << 20;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{tool} not found: {hint}")]
    NotFound { tool: &'static str, hint: String },
    #[error("{program}: cannot run it")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} {what}: did not finish within {limit:?}")]
    Timeout { tool: &'static str, what: String, limit: Duration },
    #[error("{tool} {what}: {message}")]
    Failed { tool: &'static str, what: String, message: String, location: Option<TemplateLocation> },
}

impl RenderError {
    /// The same error, its tool's message passed through `scrub`.
    pub fn scrubbed(self, scrub: impl Fn(&str) -> String) -> Self {
        match self {
            Self::Failed { tool, what, message, location } => Self::Failed { tool, what, message: scrub(&message), location },
            other => other,
        }
    }
}

/// A file of the chart (relative to its root, `/`-separated) and a line, as
/// Helm names them in a template error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateLocation {
    pub file: String,
    pub line: Option<usize>,
}

/// Finds a program: the explicit path first, then the variable's value, then
/// PATH. `hint` says how to give it.
pub fn find_program(
    tool: &'static str,
    explicit: Option<&Path>,
    from_env: Option<String>,
    path_var: Option<String>,
    hint: &str,
) -> Result<PathBuf, RenderError> {
    let not_found = |why: String| RenderError::NotFound { tool, hint: format!("{why}; {hint}") };
    if let Some(path) = explicit.map(Path::to_path_buf).or_else(|| from_env.filter(|v| !v.trim().is_empty()).map(PathBuf::from)) {
        return if path.is_file() { Ok(path) } else { Err(not_found(format!("{} is not a file", path.display()))) };
    }
    let dirs = path_var.filter(|p| !p.is_empty()).unwrap_or_else(|| DEFAULT_PATH.to_owned());
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| not_found(format!("no {tool} on PATH ({dirs})")))
}

/// One `helm template` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmTemplate {
    pub release_name: String,
    pub chart: PathBuf,
    pub namespace: String,
    pub values: PathBuf,
    /// `--set-literal key=value`: the image, as the stage sets it.
    pub set_literal: Option<(String, String)>,
}

impl HelmTemplate {
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["template".into(), self.release_name.clone().into(), self.chart.clone().into()];
        args.extend(["--namespace".into(), self.namespace.clone().into()]);
        args.extend(["--values".into(), self.values.clone().into_os_string()]);
        if let Some((key, value)) = &self.set_literal {
            args.extend(["--set-literal".into(), format!("{key}={value}").into()]);
        }
        args
    }
}

/// `kustomize build <dir>`.
pub fn kustomize_args(dir: &Path) -> Vec<OsString> {
    vec!["build".into(), dir.as_os_str().to_owned()]
}

/// Where Helm names a template in an error: `<chart>/templates/x.yaml:12:3`
/// (`template: …`), `(<chart>/templates/x.yaml:12)` (a parse error) or
/// `YAML parse error on <chart>/templates/x.yaml` (no line of the template).
/// The file comes back relative to the chart's root (the chart's name, which
/// Helm puts first, removed): `templates/x.yaml`, `charts/sub/templates/y.yaml`.
pub fn template_location(stderr: &str) -> Option<TemplateLocation> {
    let at = stderr.find("/templates/")?;
    let start = stderr[..at].rfind(|c: char| c.is_whitespace() || matches!(c, '(' | '"' | '\'' | '`')).map_or(0, |i| i + 1);
    let rest = &stderr[start..];
    let end = rest.find(|c: char| c.is_whitespace() || matches!(c, ':' | ')' | '"' | '\'' | '`')).unwrap_or(rest.len());
    let named = &rest[..end];
    let (_, file) = named.split_once('/')?;
    let line = rest[end..].strip_prefix(':').and_then(|after| {
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    Some(TemplateLocation { file: file.to_owned(), line })
}

/// Helm's message without its `Error: ` prefix and usage noise, at most 4 KiB.
fn tool_message(stderr: &str) -> String {
    let text: Vec<&str> = stderr.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    let text = text.join("\n");
    let text = text.strip_prefix("Error: ").unwrap_or(&text);
    crate::github::truncate_chars(text, 4096)
}

/// Runs `program args` in `home` (a private, writable directory) and returns
/// what it printed on stdout. `what` names the run in errors.
pub async fn run(
    tool: &'static str,
    program: &Path,
    args: &[OsString],
    home: &Path,
    timeout: Duration,
    what: &str,
) -> Result<String, RenderError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()))
        .env("HOME", home)
        .env("TMPDIR", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| RenderError::Spawn { program: program.display().to_string(), source })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => return Err(RenderError::Spawn { program: program.display().to_string(), source }),
        // Dropping the future kills the child (kill_on_drop).
        Err(_) => return Err(RenderError::Timeout { tool, what: what.to_owned(), limit: timeout }),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let message = tool_message(&stderr);
        let status = output.status.code().map_or_else(|| "was killed by a signal".to_owned(), |c| format!("exited {c}"));
        let message = if message.is_empty() { status } else { message };
        return Err(RenderError::Failed { tool, what: what.to_owned(), location: template_location(&stderr), message });
    }
    if output.stdout.len() > MAX_OUTPUT {
        let message = format!("printed more than {} MiB", MAX_OUTPUT >> 20);
        return Err(RenderError::Failed { tool, what: what.to_owned(), message, location: None });
    }
    String::from_utf8(output.stdout).map_err(|_| RenderError::Failed {
        tool,
        what: what.to_owned(),
        message: "printed text that is not UTF-8".into(),
        location: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_flags_are_the_stages() {
        let t = HelmTemplate {
            release_name: "staging".into(),
            chart: "/w/charts/app".into(),
            namespace: "codeai".into(),
            values: "/tmp/v/staging.yaml".into(),
            set_literal: Some(("image".into(), "ghcr.io/a/b@sha256:00".into())),
        };
        let args: Vec<String> = t.args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "template",
                "staging",
                "/w/charts/app",
                "--namespace",
                "codeai",
                "--values",
                "/tmp/v/staging.yaml",
                "--set-literal",
                "image=ghcr.io/a/b@sha256:00"
            ]
        );
        assert_eq!(kustomize_args(Path::new("/c/package/kustomize")), [OsString::from("build"), "/c/package/kustomize".into()]);
    }

    #[test]
    fn helm_errors_point_at_the_template() {
        // Helm v3's `helm template`, and Helm v4's own wording.
        let v3 = "Error: template: demo/templates/service.yaml:16:17: executing \"demo/templates/service.yaml\" at <.Values.nope.deeper>: nil pointer evaluating interface {}.deeper\n";
        assert_eq!(template_location(v3), Some(TemplateLocation { file: "templates/service.yaml".into(), line: Some(16) }));
        let v4 = "Error: demo/templates/service.yaml:16:17\n  executing \"demo/templates/service.yaml\" at <.Values.nope.deeper>:\n";
        assert_eq!(template_location(v4).unwrap().line, Some(16));
        let parse = "Error: parse error at (demo/templates/_helpers.tpl:17): unclosed action";
        assert_eq!(template_location(parse), Some(TemplateLocation { file: "templates/_helpers.tpl".into(), line: Some(17) }));
        let yaml = "Error: YAML parse error on demo/charts/db/templates/cm.yaml: error converting YAML to JSON: yaml: line 21: x";
        assert_eq!(template_location(yaml), Some(TemplateLocation { file: "charts/db/templates/cm.yaml".into(), line: None }));
        assert_eq!(template_location("Error: chart requires kubeVersion"), None);
        assert_eq!(tool_message(v3).lines().count(), 1);
        assert!(tool_message(v3).starts_with("template: demo/templates/service.yaml:16:17"));
    }

    #[test]
    fn programs_are_found_flag_then_variable_then_path() {
        let dir = tempfile::tempdir().unwrap();
        let helm = dir.path().join("helm");
        std::fs::write(&helm, "#!/bin/sh\n").unwrap();
        let path = Some(dir.path().display().to_string());
        assert_eq!(find_program("helm", Some(&helm), None, None, "h").unwrap(), helm);
        assert_eq!(find_program("helm", None, Some(helm.display().to_string()), None, "h").unwrap(), helm);
        assert_eq!(find_program("helm", None, None, path.clone(), "h").unwrap(), helm);
        let err = find_program("helm", None, Some("/nope/helm".into()), path, "pass --helm PATH").unwrap_err().to_string();
        assert_eq!(err, "helm not found: /nope/helm is not a file; pass --helm PATH");
        let err = find_program("kustomize", None, None, Some("/nonexistent".into()), "put it on PATH").unwrap_err().to_string();
        assert_eq!(err, "kustomize not found: no kustomize on PATH (/nonexistent); put it on PATH");
    }

    #[test]
    fn runs_have_a_time_limit_and_failures_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sh = Path::new("/bin/sh");
        let args = |script: &str| vec![OsString::from("-c"), script.into()];
        rt.block_on(async {
            let out = run("helm", sh, &args("echo \"$HOME\"; echo ${KUBECONFIG:-none}"), dir.path(), DEFAULT_TIMEOUT, "x").await.unwrap();
            assert_eq!(out, format!("{}\nnone\n", dir.path().display()));
            let err = run("helm", sh, &args("sleep 5"), dir.path(), Duration::from_millis(200), "for staging").await.unwrap_err();
            assert_eq!(err.to_string(), "helm for staging: did not finish within 200ms");
            let failing = "echo 'Error: template: app/templates/a.yaml:3:1: boom' >&2; exit 1";
            let err = run("helm", sh, &args(failing), dir.path(), DEFAULT_TIMEOUT, "for staging").await.unwrap_err();
            assert_eq!(err.to_string(), "helm for staging: template: app/templates/a.yaml:3:1: boom");
            let RenderError::Failed { location, .. } = err else { panic!() };
            assert_eq!(location, Some(TemplateLocation { file: "templates/a.yaml".into(), line: Some(3) }));
        });
    }
}
