//! `Chart.yaml` checks: what Helm and Kargo's `helm-template` need to load the
//! chart from the capsule with no repository access.

use serde_yaml::Value;

/// What the capsule records about a Helm chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartInfo {
    pub name: String,
    pub version: String,
    pub app_version: Option<String>,
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub line: Option<usize>,
}

/// A problem in `Chart.yaml`, at a line when one can be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartProblem {
    pub line: Option<usize>,
    pub message: String,
}

/// The 1-based line where a top-level `key:` is written, for error positions.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':'))).map(|i| i + 1)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn parse_chart_yaml(text: &str) -> Result<ChartInfo, ChartProblem> {
    let doc: Value = serde_yaml::from_str(text)
        .map_err(|e| ChartProblem { line: e.location().map(|l| l.line()), message: format!("is not valid YAML: {e}") })?;
    let map = doc.as_mapping().ok_or(ChartProblem { line: Some(1), message: "must be a YAML mapping".into() })?;
    let field = |key: &str| map.get(key).and_then(scalar).filter(|s| !s.trim().is_empty());
    let problem = |key: &str, message: String| ChartProblem { line: key_line(text, key).or(Some(1)), message };

    match field("apiVersion").as_deref() {
        Some("v2") => {}
        Some(other) => {
            return Err(problem("apiVersion", format!("apiVersion is {other:?}; a capsule needs a Helm 3 chart with apiVersion: v2")))
        }
        None => return Err(problem("apiVersion", "apiVersion is missing; add `apiVersion: v2`".into())),
    }
    let name = field("name").ok_or_else(|| problem("name", "name is missing; add `name: <chart name>`".into()))?;
    if name.contains('/') || name.contains('\\') {
        return Err(problem("name", format!("name {name:?} must not contain path separators")));
    }
    let version =
        field("version").ok_or_else(|| problem("version", "version is missing; add a SemVer 2 version such as `version: 1.2.3`".into()))?;
    if let Err(e) = semver::Version::parse(&version) {
        return Err(problem("version", format!("version {version:?} is not SemVer 2 ({e}); use MAJOR.MINOR.PATCH, e.g. 1.2.3")));
    }
    let app_version = field("appVersion");

    let mut dependencies = Vec::new();
    if let Some(deps) = map.get("dependencies") {
        let list = deps.as_sequence().ok_or_else(|| problem("dependencies", "dependencies must be a list".into()))?;
        let dep_lines: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().trim_start_matches("- ").starts_with("name:"))
            .map(|(i, _)| i + 1)
            .collect();
        let first_dep_line = key_line(text, "dependencies").unwrap_or(1);
        let mut later = dep_lines.into_iter().filter(|&l| l > first_dep_line);
        for dep in list {
            let name = dep.get("name").and_then(scalar).ok_or_else(|| problem("dependencies", "every dependency needs a name".into()))?;
            dependencies.push(Dependency { name, line: later.next() });
        }
    }
    Ok(ChartInfo { name, version, app_version, dependencies })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_good_chart() {
        let c = parse_chart_yaml(
            "apiVersion: v2\nname: hello\nversion: 0.1.0\nappVersion: 1.16\ndependencies:\n  - name: redis\n    version: 1.x\n",
        )
        .unwrap();
        assert_eq!(c.name, "hello");
        assert_eq!(c.app_version.as_deref(), Some("1.16"));
        assert_eq!(c.dependencies, vec![Dependency { name: "redis".into(), line: Some(6) }]);
    }

    #[test]
    fn problems_name_the_line() {
        let e = parse_chart_yaml("apiVersion: v2\nname: hello\nversion: 1.0\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("SemVer"), "{}", e.message);
        let e = parse_chart_yaml("apiVersion: v1\nname: hello\nversion: 1.0.0\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        let e = parse_chart_yaml("apiVersion: v2\nname: [unclosed\n").unwrap_err();
        assert!(e.line.is_some());
        let e = parse_chart_yaml("apiVersion: v2\nversion: 1.0.0\n").unwrap_err();
        assert!(e.message.contains("name is missing"));
    }
}
