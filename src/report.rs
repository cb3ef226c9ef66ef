//! What a finished build or publish tells the user: one JSON object for
//! machines, a short block of lines for people.

use serde::Serialize;

use crate::core::capsule::Built;
use crate::core::package::Package;
use crate::core::release::Release;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapsuleReport {
    pub digest: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub tag: String,
    pub capsule_repository: String,
    pub image: String,
    pub image_digest: String,
    pub package_kind: String,
    pub package_digest: String,
    pub package_name: Option<String>,
    pub package_version: Option<String>,
    pub file_count: usize,
    pub package_size: u64,
    pub layer_digest: String,
    pub layer_size: u64,
    /// Layer 1, the Helm chart, when the capsule has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart_layer_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart_layer_size: Option<u64>,
    pub created: String,
}

impl CapsuleReport {
    pub fn new(r: &Release, package: &Package, built: &Built) -> Self {
        Self {
            digest: built.digest.to_string(),
            reference: r.capsule.with_digest(&built.digest),
            tag: r.tag(),
            capsule_repository: r.capsule.to_string(),
            image: r.image.to_string(),
            image_digest: r.image_digest.to_string(),
            package_kind: r.package_kind.to_string(),
            package_digest: r.package_digest.to_string(),
            package_name: package.chart.as_ref().map(|c| c.name.clone()),
            package_version: package.chart.as_ref().map(|c| c.version.clone()),
            file_count: package.file_count(),
            package_size: package.total_size,
            layer_digest: built.layer.digest.to_string(),
            layer_size: built.layer.size,
            chart_layer_digest: built.chart_layer.as_ref().map(|l| l.digest.to_string()),
            chart_layer_size: built.chart_layer.as_ref().map(|l| l.size),
            created: r.created.to_string(),
        }
    }

    /// The human summary, one fact per line.
    pub fn lines(&self) -> Vec<String> {
        let package = match (&self.package_name, &self.package_version) {
            (Some(n), Some(v)) => format!("{} chart {n} {v}", self.package_kind),
            _ => self.package_kind.clone(),
        };
        let mut lines = vec![
            format!("capsule  {}:{}", self.capsule_repository, self.tag),
            format!("digest   {}", self.digest),
            format!("image    {}@{}", self.image, self.image_digest),
            format!("package  {package}, {} files, {}, {}", self.file_count, human_size(self.package_size), self.package_digest),
            format!("layer    {} ({})", self.layer_digest, human_size(self.layer_size)),
        ];
        if let (Some(d), Some(size)) = (&self.chart_layer_digest, self.chart_layer_size) {
            lines.push(format!("chart    {d} ({}, layer 1 for Flux's HelmRelease)", human_size(size)));
        }
        lines.push(format!("created  {}", self.created));
        lines
    }
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) {
    println!("{}", serde_json::to_string(value).unwrap_or_default());
}
