//! `release-capsule verify`: is this capsule the real release of this image?
//! The trust chain of spec section 8; exit 0 verified, 1 failed, 2 bad input,
//! 3 registry or network failure.

use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::core::verify::Check;
use crate::failure::{Classify, Failure, FailureKind};
use crate::registry::RegistryClient;
use crate::report;
use crate::settings::{Env, VerifySettings};
use crate::trust::{self, Verdict};

/// The `--json` document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport<'a> {
    pub verified: bool,
    /// `<repo>@<digest>` once the reference resolved, else the reference as given.
    pub capsule: String,
    pub image: String,
    pub image_digest: Option<&'a str>,
    pub git_commit: Option<&'a str>,
    pub package_digest: Option<&'a str>,
    pub output: Option<String>,
    pub checks: Vec<&'a Check>,
}

impl<'a> VerifyReport<'a> {
    pub fn new(s: &VerifySettings, v: &'a Verdict) -> Self {
        let release = v.release.as_ref();
        let verified = v.verified();
        Self {
            verified,
            capsule: v.digest.as_ref().map_or_else(|| v.capsule.to_string(), |d| v.capsule.repo.with_digest(d)),
            image: s.image.to_string(),
            image_digest: release.and_then(|r| r.image.digest.as_deref()),
            git_commit: release.and_then(|r| r.git_commit.as_deref()),
            package_digest: release.and_then(|r| r.package.digest.as_deref()),
            output: s.output.as_ref().filter(|_| verified).map(|o| o.display().to_string()),
            checks: v.checks.iter().collect(),
        }
    }

    fn lines(&self) -> Vec<String> {
        let passed = self.checks.iter().filter(|c| c.ok).count();
        let or_none = |v: Option<&str>| v.unwrap_or("(unknown)").to_owned();
        let mut lines = vec![
            format!("capsule  {}", self.capsule),
            format!("image    {}@{}", self.image, or_none(self.image_digest)),
            format!("commit   {}", or_none(self.git_commit)),
            format!("package  {}", or_none(self.package_digest)),
            format!("checks   {passed} passed"),
        ];
        if let Some(out) = &self.output {
            lines.push(format!("output   {out}"));
        }
        lines
    }
}

/// Runs the flow against `client` and reports; a failed verification is exit 1.
pub async fn execute<C: RegistryClient>(s: &VerifySettings, client: &C) -> Result<(), Failure> {
    let question =
        trust::Question { capsule: &s.capsule, image: &s.image, image_digest: s.image_digest.as_ref(), public_key: s.public_key.as_ref() };
    let verdict = trust::verify_into(client, question, s.output.as_deref()).await?;
    let report = VerifyReport::new(s, &verdict);
    if s.json {
        report::print_json(&report);
    } else if report.verified {
        println!("verified {}", s.capsule);
        for line in report.lines() {
            println!("  {line}");
        }
    }
    if report.verified {
        Ok(())
    } else {
        Err(Failure::failed(trust::failed_checks(&report.capsule, &verdict.checks)))
    }
}

pub fn run(args: &VerifyArgs, env: Env) -> Result<(), Failure> {
    let s = VerifySettings::resolve(args, env).or_fail(FailureKind::Input)?;
    let s = &s;
    let result = super::block_on_with_signals(|cancel| async move {
        let verifying = format!("verifying {}", s.capsule);
        cancel
            .guard(&verifying, async {
                let client = super::pull::connect(&s.credentials)?;
                execute(s, &client).await
            })
            .await
    });
    super::pull::cleaned_up_after_cancel(result, s.output.as_deref())
}
