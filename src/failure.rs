//! How a command failed, which decides the exit code (spec section 8):
//! 1 verification failed, 2 bad usage or input, 3 registry or network failure;
//! 130 cancelled by a signal.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Verification failed, or any failure that is not the user's input or the network.
    Failed = 1,
    Input = 2,
    Network = 3,
    /// Stopped by SIGINT or SIGTERM (the shell's 128 + SIGINT).
    Cancelled = 130,
}

#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(kind: FailureKind, error: impl Into<anyhow::Error>) -> Self {
        Self { kind, error: error.into() }
    }
    pub fn input(error: impl Into<anyhow::Error>) -> Self {
        Self::new(FailureKind::Input, error)
    }
    pub fn failed(error: impl Into<anyhow::Error>) -> Self {
        Self::new(FailureKind::Failed, error)
    }
    pub fn network(error: impl Into<anyhow::Error>) -> Self {
        Self::new(FailureKind::Network, error)
    }
    pub fn cancelled(error: impl Into<anyhow::Error>) -> Self {
        Self::new(FailureKind::Cancelled, error)
    }
    pub fn exit_code(&self) -> u8 {
        self.kind as u8
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// `?` on results whose error type already knows its kind.
pub trait Classify<T> {
    fn or_fail(self, kind: FailureKind) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> Classify<T> for Result<T, E> {
    fn or_fail(self, kind: FailureKind) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(kind, e))
    }
}
