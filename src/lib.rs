//! release-capsule: one immutable OCI artifact per release, the centre of
//! release truth for Kargo promotions.
//!
//! `core` is pure and deterministic; `layout`, `registry` and `github` are the
//! edges; `commands` wires them together behind the CLI.

pub mod action;
pub mod cancel;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod core;
pub mod entropy;
pub mod failure;
pub mod github;
pub mod gitops;
pub mod image_layout;
pub mod layout;
pub mod markdown;
pub mod preview;
pub mod registry;
pub mod report;
pub mod scratch;
pub mod serve;
pub mod settings;
pub mod sign;
pub mod tree;
pub mod trust;
