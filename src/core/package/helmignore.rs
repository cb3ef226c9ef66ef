//! `.helmignore`, with Helm's own semantics (helm `pkg/ignore/rules.go`), so the
//! capsule holds exactly what `helm package` would put in the chart archive.
//! That includes Helm's quirk for negated rules: a `!pattern` that does not match
//! a path ignores it.

/// Helm's one default rule: hidden files under `templates/`.
const DEFAULT_RULES: &[&str] = &["templates/.?*"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct RuleError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug)]
enum Anchor {
    /// `/foo`: matched against the whole relative path, from the root.
    Root,
    /// `foo/bar`: matched against the whole relative path.
    Path,
    /// `foo`: matched against the base name only.
    Base,
}

#[derive(Debug)]
struct Rule {
    glob: String,
    negate: bool,
    must_dir: bool,
    anchor: Anchor,
}

#[derive(Debug, Default)]
pub struct HelmIgnore {
    rules: Vec<Rule>,
}

impl HelmIgnore {
    /// Rules from a `.helmignore` text, after Helm's defaults.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let mut rules = Self::default();
        for rule in DEFAULT_RULES {
            rules.push(rule, 0)?;
        }
        for (i, line) in text.lines().enumerate() {
            rules.push(line, i + 1)?;
        }
        Ok(rules)
    }

    /// Only Helm's defaults, for charts without a `.helmignore`.
    pub fn defaults() -> Self {
        Self::parse("").unwrap_or_default()
    }

    fn push(&mut self, raw: &str, line: usize) -> Result<(), RuleError> {
        let mut rule = raw.trim();
        if rule.is_empty() || rule.starts_with('#') {
            return Ok(());
        }
        if rule.contains("**") {
            return Err(RuleError { line, message: format!("{rule:?}: double-star (**) syntax is not supported by Helm") });
        }
        if let Err(message) = glob_match(rule, "abc") {
            return Err(RuleError { line, message: format!("{rule:?}: {message}") });
        }
        let negate = rule.starts_with('!');
        if negate {
            rule = &rule[1..];
        }
        let must_dir = rule.ends_with('/');
        if must_dir {
            rule = &rule[..rule.len() - 1];
        }
        let (anchor, glob) = if let Some(stripped) = rule.strip_prefix('/') {
            (Anchor::Root, stripped)
        } else if rule.contains('/') {
            (Anchor::Path, rule)
        } else {
            (Anchor::Base, rule)
        };
        self.rules.push(Rule { glob: glob.to_owned(), negate, must_dir, anchor });
        Ok(())
    }

    /// Whether `path` (relative, `/`-separated) is left out of the chart.
    pub fn ignores(&self, path: &str, is_dir: bool) -> bool {
        if path.is_empty() || path == "." {
            return false;
        }
        for rule in &self.rules {
            let candidate = match rule.anchor {
                Anchor::Root | Anchor::Path => path,
                Anchor::Base => path.rsplit('/').next().unwrap_or(path),
            };
            let matched = glob_match(&rule.glob, candidate).unwrap_or(false);
            if rule.negate {
                if (rule.must_dir && !is_dir) || !matched {
                    return true;
                }
                continue;
            }
            if rule.must_dir && !is_dir {
                continue;
            }
            if matched {
                return true;
            }
        }
        false
    }
}

/// Go's `path/filepath.Match` on `/`-separated names: `*` and `?` never cross
/// `/`, `[...]` classes with `^` negation and ranges, `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, String> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate the whole pattern up front, as Go reports ErrBadPattern even when
    // a mismatch is found early.
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err("trailing backslash in pattern".into());
                }
                i += 2;
            }
            '[' => i = parse_class(&p, i + 1)?.1,
            _ => i += 1,
        }
    }
    Ok(match_here(&p, &n))
}

/// Parses a class starting after `[`; returns (ranges, negated) and the index after `]`.
#[allow(clippy::type_complexity)]
fn parse_class(p: &[char], mut i: usize) -> Result<((Vec<(char, char)>, bool), usize), String> {
    let bad = || "malformed character class in pattern".to_string();
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(i).ok_or_else(bad)?;
        if c == ']' && !first {
            return Ok(((ranges, negated), i + 1));
        }
        first = false;
        let lo = read_class_char(p, &mut i).ok_or_else(bad)?;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            i += 1;
            hi = read_class_char(p, &mut i).ok_or_else(bad)?;
        }
        ranges.push((lo, hi));
    }
}

fn read_class_char(p: &[char], i: &mut usize) -> Option<char> {
    let c = *p.get(*i)?;
    match c {
        '-' | ']' => None,
        '\\' => {
            let e = *p.get(*i + 1)?;
            *i += 2;
            Some(e)
        }
        _ => {
            *i += 1;
            Some(c)
        }
    }
}

fn match_here(p: &[char], n: &[char]) -> bool {
    let Some(&c) = p.first() else { return n.is_empty() };
    match c {
        '*' => {
            let rest = &p[1..];
            let mut k = 0;
            loop {
                if match_here(rest, &n[k..]) {
                    return true;
                }
                if k == n.len() || n[k] == '/' {
                    return false;
                }
                k += 1;
            }
        }
        '?' => !n.is_empty() && n[0] != '/' && match_here(&p[1..], &n[1..]),
        '[' => {
            let Ok(((ranges, negated), next)) = parse_class(p, 1) else { return false };
            let Some(&ch) = n.first() else { return false };
            let inside = ranges.iter().any(|&(lo, hi)| lo <= ch && ch <= hi);
            ch != '/' && inside != negated && match_here(&p[next..], &n[1..])
        }
        '\\' => p.len() > 1 && n.first() == Some(&p[1]) && match_here(&p[2..], &n[1..]),
        _ => n.first() == Some(&c) && match_here(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match_semantics() {
        assert_eq!(glob_match("*.tgz", "a.tgz"), Ok(true));
        assert_eq!(glob_match("*", "a/b"), Ok(false));
        assert_eq!(glob_match("a/*/c", "a/b/c"), Ok(true));
        assert_eq!(glob_match("[a-c]?", "bz"), Ok(true));
        assert_eq!(glob_match("[^a-c]", "b"), Ok(false));
        assert_eq!(glob_match("\\*", "*"), Ok(true));
        assert!(glob_match("[a-", "a").is_err());
        assert!(glob_match("a\\", "a").is_err());
    }

    #[test]
    fn helm_rules() {
        let ig = HelmIgnore::parse("# comment\n*.bak\n/secret.txt\nci/\ndocs/*.md\n").unwrap();
        assert!(ig.ignores("values.bak", false));
        assert!(ig.ignores("templates/x.bak", false));
        assert!(ig.ignores("secret.txt", false));
        assert!(!ig.ignores("templates/secret.txt", false));
        assert!(ig.ignores("ci", true));
        assert!(!ig.ignores("ci", false));
        assert!(ig.ignores("docs/a.md", false));
        assert!(!ig.ignores("docs/x/a.md", false));
        assert!(ig.ignores("templates/.hidden", false));
        assert!(!ig.ignores("templates/deployment.yaml", false));
    }

    #[test]
    fn helm_negation_quirk_is_kept() {
        // In Helm, a negated rule that does not match a path ignores that path.
        let ig = HelmIgnore::parse("!keep.txt\n").unwrap();
        assert!(!ig.ignores("keep.txt", false));
        assert!(ig.ignores("other.txt", false));
    }

    #[test]
    fn bad_rules_name_their_line() {
        assert_eq!(HelmIgnore::parse("ok\nfoo/**/bar\n").unwrap_err().line, 2);
        assert_eq!(HelmIgnore::parse("[\n").unwrap_err().line, 1);
    }
}
