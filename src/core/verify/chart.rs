//! Layer 1 (spec section 5), the Helm chart as `helm package` lays it out, is
//! what Flux's HelmRelease deploys; layer 0 is what Kargo and `verify` read.
//! Without these checks Flux could deploy a chart nobody verified. Helm's
//! archive loader (helm.sh/helm/v3 pkg/chart/loader/archive.go) wants every
//! entry under one top-level directory and no file at the root; the files
//! under it must be exactly those of `package/helm/`, byte for byte.

use std::collections::BTreeMap;

use super::Checks;
use crate::core::ident::Digest;
use crate::core::manifest::chart_archive_name;
use crate::core::release::ReleaseDoc;
use crate::core::unpack::UnpackedFile;

/// Layer 1 as unpacked, and the title its descriptor carries.
#[derive(Debug, Clone)]
pub struct ChartLayerFiles {
    pub files: Vec<UnpackedFile>,
    pub title: Option<String>,
}

impl ChartLayerFiles {
    /// The one top-level directory, when there is exactly one and nothing else at the root.
    pub fn top(&self) -> Option<&str> {
        let mut tops = self.files.iter().map(|f| f.path.split_once('/').map(|(top, _)| top));
        let first = tops.next()??;
        tops.all(|t| t == Some(first)).then_some(first)
    }
}

/// The files of layer 1 against `package/helm/` of layer 0.
pub fn check_chart_files(checks: &mut Checks, capsule_files: &[UnpackedFile], chart: &ChartLayerFiles) -> bool {
    let Some(top) = chart.top() else {
        let roots: Vec<&str> = chart.files.iter().map(|f| f.path.split('/').next().unwrap_or("")).collect();
        let mut shown: Vec<&str> = roots.clone();
        shown.dedup();
        checks.that(
            "chart layer",
            false,
            "every file under one top-level directory (Helm's archive loader)",
            format_args!("{}", if chart.files.is_empty() { "no files".to_owned() } else { shown.join(", ") }),
        );
        return false;
    };
    let prefix = format!("{top}/");
    let chart_side: BTreeMap<&str, &Digest> = chart.files.iter().filter_map(|f| Some((f.path.strip_prefix(&prefix)?, &f.sha256))).collect();
    let package_side: BTreeMap<&str, &Digest> =
        capsule_files.iter().filter_map(|f| Some((f.path.strip_prefix("package/helm/")?, &f.sha256))).collect();
    let mut differences = Vec::new();
    for (path, digest) in &package_side {
        match chart_side.get(path) {
            None => differences.push(format!("{path} missing")),
            Some(d) if d != digest => differences.push(format!("{path} differs")),
            Some(_) => {}
        }
    }
    differences.extend(chart_side.keys().filter(|p| !package_side.contains_key(*p)).map(|p| format!("{p} extra")));
    let shown = match differences.len() {
        0 => format!("the same {} files", package_side.len()),
        n if n <= 5 => differences.join(", "),
        n => format!("{} and {} more", differences[..5].join(", "), n - 5),
    };
    checks.that("chart layer files", differences.is_empty(), format_args!("the files of package/helm/ under {top}/, byte for byte"), shown)
}

/// Layer 1's directory and title name the chart release.yaml describes.
pub(super) fn check_chart_name(checks: &mut Checks, doc: &ReleaseDoc, chart: &ChartLayerFiles) {
    let Some(described) = doc.package.chart.as_ref().filter(|_| doc.package.kind.as_deref() == Some("helm")) else {
        checks.that("chart layer", false, "no chart layer: release.yaml describes no Helm chart", "a chart layer");
        return;
    };
    let name = described.name.clone().unwrap_or_default();
    checks.equal("chart layer directory", &name, chart.top());
    let title = chart_archive_name(&name, described.version.as_deref().unwrap_or_default());
    checks.equal("chart layer title", &title, chart.title.as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8]) -> UnpackedFile {
        UnpackedFile { path: path.into(), size: content.len() as u64, sha256: Digest::of(content) }
    }

    fn capsule() -> Vec<UnpackedFile> {
        vec![
            file("package/helm/Chart.yaml", b"name: demo"),
            file("package/helm/templates/cm.yaml", b"kind: ConfigMap"),
            file("release.yaml", b"x"),
        ]
    }

    fn chart(files: Vec<UnpackedFile>) -> ChartLayerFiles {
        ChartLayerFiles { files, title: Some("demo-0.1.0.tgz".into()) }
    }

    #[test]
    fn the_same_files_under_one_directory_pass() {
        let mut checks = Checks::default();
        let c = chart(vec![file("demo/Chart.yaml", b"name: demo"), file("demo/templates/cm.yaml", b"kind: ConfigMap")]);
        assert!(check_chart_files(&mut checks, &capsule(), &c), "{}", checks.failure_lines());
        assert_eq!(c.top(), Some("demo"));
    }

    #[test]
    fn a_different_missing_or_extra_file_and_a_bad_layout_fail() {
        let cases = [
            (vec![file("demo/Chart.yaml", b"name: demo"), file("demo/templates/cm.yaml", b"kind: Secret")], "templates/cm.yaml differs"),
            (vec![file("demo/Chart.yaml", b"name: demo")], "templates/cm.yaml missing"),
            (
                vec![
                    file("demo/Chart.yaml", b"name: demo"),
                    file("demo/templates/cm.yaml", b"kind: ConfigMap"),
                    file("demo/evil.yaml", b"x"),
                ],
                "evil.yaml extra",
            ),
        ];
        for (files, expected) in cases {
            let mut checks = Checks::default();
            assert!(!check_chart_files(&mut checks, &capsule(), &chart(files)));
            assert_eq!(checks.get("chart layer files").unwrap().actual, expected);
        }
        for files in [vec![file("Chart.yaml", b"name: demo")], vec![file("a/Chart.yaml", b""), file("b/x", b"")], vec![]] {
            let mut checks = Checks::default();
            assert!(!check_chart_files(&mut checks, &capsule(), &chart(files)));
            assert!(checks.get("chart layer").is_some_and(|c| !c.ok));
        }
    }
}
