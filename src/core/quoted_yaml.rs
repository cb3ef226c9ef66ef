//! YAML written in a fixed shape: keys in the order given, nested maps by
//! indentation, every scalar double-quoted. Kargo's `yaml-parse` and most
//! YAML readers turn an unquoted all-digit sha into a number (and `12e45…`
//! into a float); a quoted scalar is always the string it says. release.yaml
//! and the GitOps records are written with it.

/// A scalar as a YAML double-quoted string. JSON's string syntax is a subset
/// of YAML's double-quoted style, escapes included.
pub fn quoted(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

#[derive(Debug, Default)]
pub struct QuotedYaml {
    out: String,
}

impl QuotedYaml {
    pub fn new() -> Self {
        Self::default()
    }
    /// `key:` opening a map whose entries are indented by two more spaces.
    pub fn map(&mut self, indent: usize, key: &str) {
        self.out.push_str(&format!("{:indent$}{key}:\n", ""));
    }
    /// `key: "value"`.
    pub fn scalar(&mut self, indent: usize, key: &str, value: &str) {
        self.out.push_str(&format!("{:indent$}{key}: {}\n", "", quoted(value)));
    }
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_quoted() {
        let mut y = QuotedYaml::new();
        y.scalar(0, "sha", "1234567890");
        y.map(0, "image");
        y.scalar(2, "tag", "a\"b\n");
        assert_eq!(y.finish(), "sha: \"1234567890\"\nimage:\n  tag: \"a\\\"b\\n\"\n");
    }
}
