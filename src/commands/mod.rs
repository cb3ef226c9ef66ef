//! One module per subcommand. Each resolves its settings, runs, and reports.

pub mod build;
pub mod gitops;
pub mod preview;
pub mod public_key;
pub mod publish;
pub mod pull;
pub mod verify;

/// Runs a network command's future to completion on a fresh runtime.
pub fn block_on<T>(future: impl std::future::Future<Output = Result<T, crate::failure::Failure>>) -> Result<T, crate::failure::Failure> {
    use crate::failure::{Classify, FailureKind};
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().or_fail(FailureKind::Failed)?;
    rt.block_on(future)
}

/// [`block_on`] with SIGINT and SIGTERM handlers installed first: as PID 1 (a
/// container step, a Kubernetes Job) a signal without a handler is ignored,
/// so without them the command would run on until it is killed. `flow` gets
/// the token and decides where it may stop.
pub fn block_on_with_signals<T, F>(flow: impl FnOnce(crate::cancel::Cancel) -> F) -> Result<T, crate::failure::Failure>
where
    F: std::future::Future<Output = Result<T, crate::failure::Failure>>,
{
    block_on(async { flow(crate::cancel::Cancel::on_signals()).await })
}
