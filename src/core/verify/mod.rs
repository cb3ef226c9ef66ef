//! The checks of the trust chain (spec section 8), as pure functions over what
//! was fetched and unpacked. Every check names the field, the value expected
//! and the value found, and the checks of one step all run, so a failed
//! verification lists everything that is wrong at once.
//!
//! - [`manifest`]: step 1 (the manifest) and step 2 (the layers' digests);
//! - [`release`]: step 4, release.yaml against the capsule and the caller;
//! - [`chart`]: layer 1, the Helm chart, against `package/helm/`.

mod chart;
mod manifest;
mod release;

use std::fmt;

use serde::Serialize;

pub use self::chart::{check_chart_files, ChartLayerFiles};
pub use self::manifest::{check_chart_layer, check_layer, check_manifest, CapsuleManifest};
pub use self::release::{check_contents, check_fields, check_release, read_release, Expectations};

/// What a check shows for a field the document does not have.
pub const MISSING: &str = "(missing)";

/// One comparison: `name: expected X, got Y` when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: expected {}, got {}", self.name, self.expected, self.actual)
    }
}

/// The checks made so far, in the order the spec lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Checks(Vec<Check>);

impl Checks {
    /// Records a check whose outcome the caller decided; returns it.
    pub fn that(&mut self, name: &str, ok: bool, expected: impl fmt::Display, actual: impl fmt::Display) -> bool {
        self.0.push(Check { name: name.to_owned(), ok, expected: expected.to_string(), actual: actual.to_string() });
        ok
    }
    /// `actual == expected`; an absent actual value fails and shows as [`MISSING`].
    pub fn equal(&mut self, name: &str, expected: &str, actual: Option<&str>) -> bool {
        self.that(name, actual == Some(expected), expected, actual.unwrap_or(MISSING))
    }
    pub fn iter(&self) -> impl Iterator<Item = &Check> {
        self.0.iter()
    }
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.0.iter().filter(|c| !c.ok)
    }
    pub fn failure_count(&self) -> usize {
        self.failed().count()
    }
    /// True when something was checked and nothing failed.
    pub fn all_ok(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|c| c.ok)
    }
    /// The failed checks, one per line, for an error message.
    pub fn failure_lines(&self) -> String {
        self.failed().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n")
    }
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.0.iter().find(|c| c.name == name)
    }
}
