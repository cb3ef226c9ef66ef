//! `release-capsule pull`: download a capsule, check its digests and unpack it
//! safely (steps 1 to 3 of spec section 8, without the release checks).

use serde::Serialize;

use crate::cli::PullArgs;
use crate::failure::{Classify, Failure, FailureKind};
use crate::registry::{ClientOptions, OciRegistry, RegistryClient};
use crate::report;
use crate::settings::{Env, PullSettings, RegistryCredentials};
use crate::trust::{self, Pulled};

/// The `--json` document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullReport {
    pub capsule: String,
    pub digest: String,
    pub layer_digest: String,
    pub layer_size: u64,
    pub file_count: usize,
    pub output: String,
}

impl PullReport {
    pub fn new(s: &PullSettings, p: &Pulled) -> Self {
        Self {
            capsule: p.capsule.repo.with_digest(&p.digest),
            digest: p.digest.to_string(),
            layer_digest: p.layer_digest.to_string(),
            layer_size: p.layer_size,
            file_count: p.file_count,
            output: s.output.display().to_string(),
        }
    }
}

pub async fn execute<C: RegistryClient>(s: &PullSettings, client: &C) -> Result<(), Failure> {
    let pulled = trust::pull_into(client, &s.capsule, &s.output).await?;
    let r = PullReport::new(s, &pulled);
    if s.json {
        report::print_json(&r);
    } else {
        println!("pulled {}", r.capsule);
        println!("  layer    {} ({})", r.layer_digest, report::human_size(r.layer_size));
        println!("  output   {} ({} files)", r.output, r.file_count);
    }
    Ok(())
}

/// A registry client that only reads, with the user's credentials.
pub fn connect(credentials: &RegistryCredentials) -> Result<OciRegistry, Failure> {
    OciRegistry::new(credentials, ClientOptions::default()).map_err(Failure::from)
}

pub fn run(args: &PullArgs, env: Env) -> Result<(), Failure> {
    let s = PullSettings::resolve(args, env).or_fail(FailureKind::Input)?;
    let s = &s;
    let result = super::block_on_with_signals(|cancel| async move {
        let pulling = format!("pulling {}", s.capsule);
        cancel
            .guard(&pulling, async {
                let client = connect(&s.credentials)?;
                execute(s, &client).await
            })
            .await
    });
    cleaned_up_after_cancel(result, Some(&s.output))
}

/// After a cancellation, `output` is as it was: the tree is staged beside it
/// and only moved in once complete, and the staging directory is removed when
/// the flow is dropped. An unpack that was still running then (it runs on a
/// blocking thread, which the runtime waited for) may have written into it
/// again: removed here, once nothing runs any more.
pub fn cleaned_up_after_cancel(result: Result<(), Failure>, output: Option<&std::path::Path>) -> Result<(), Failure> {
    if let (Err(f), Some(output)) = (&result, output) {
        if f.kind == FailureKind::Cancelled {
            // staging_dir removes a leftover staging directory of this process.
            let _ = crate::layout::staging_dir(output);
        }
    }
    result
}
