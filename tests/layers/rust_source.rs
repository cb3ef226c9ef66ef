//! Reading Rust source as the layer check needs it: code without comments or
//! literals, `use` trees expanded into paths, and where a file sits in the
//! module tree.

use std::path::Path;

/// The source with comments removed and the contents of string and character
/// literals blanked (newlines kept), so that only code is read.
pub fn code_only(source: &str) -> String {
    let s: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r'))) && !s[..i].last().is_some_and(|p| p.is_alphanumeric() || *p == '_') && {
            let j = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = s[j..].iter().take_while(|h| **h == '#').count();
            s.get(j + hashes) == Some(&'"')
        } {
            let j = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = s[j..].iter().take_while(|h| **h == '#').count();
            let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            out.push('"');
            i = j + hashes + 1;
            while i < s.len() && s[i..].iter().take(close.len()).ne(close.iter()) {
                out.push(blank(s[i]));
                i += 1;
            }
            out.push('"');
            i += close.len();
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < s.len() {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && (next == Some('\\') && s.get(i + 3..).is_some() || s.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\u{..}'); otherwise a lifetime.
            let end = s[i + 1..].iter().position(|x| *x == '\'').map_or(s.len(), |p| i + 1 + p);
            out.push_str("' '");
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

pub fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The full paths a path (or `use` tree) starting at `text` names:
/// `a::{b, c::{d}}` gives `a::b` and `a::c::d`.
pub fn expand(text: &str) -> Vec<String> {
    fn tree(t: &[char], i: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let skip_ws = |i: &mut usize| {
            while *i < t.len() && t[*i].is_whitespace() {
                *i += 1;
            }
        };
        let mut path = prefix.to_owned();
        loop {
            skip_ws(i);
            if *i < t.len() && t[*i] == '{' {
                *i += 1;
                loop {
                    skip_ws(i);
                    if *i >= t.len() || t[*i] == '}' {
                        *i += 1;
                        return;
                    }
                    tree(t, i, &path, out);
                    skip_ws(i);
                    if *i < t.len() && t[*i] == ',' {
                        *i += 1;
                    }
                }
            }
            let start = *i;
            while *i < t.len() && (is_ident(t[*i]) || t[*i] == '*') {
                *i += 1;
            }
            let segment: String = t[start..*i].iter().collect();
            if !segment.is_empty() {
                path = if path.is_empty() { segment } else { format!("{path}::{segment}") };
            }
            skip_ws(i);
            if t.get(*i) == Some(&':') && t.get(*i + 1) == Some(&':') {
                *i += 2;
                continue;
            }
            // The end of this path: skip an `as` alias, then hand the path back.
            out.push(path);
            return;
        }
    }
    let t: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    tree(&t, &mut 0, "", &mut out);
    out
}

/// Where a module's items live: `src/a.rs` and `src/a/mod.rs` are `a`,
/// `src/a/b.rs` is `a::b`; the crate root is empty.
pub fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}
