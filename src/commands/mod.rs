//! One module per subcommand. Each resolves its settings, runs, and reports.

pub mod build;
pub mod publish;
pub mod pull;
pub mod verify;
