//! Writes merged values back as YAML for `helm template --values`: block
//! style, each plain scalar exactly as it was written (so Helm types it as
//! it would type Kargo's merged file), everything else double-quoted.

use super::{Key, Node, Style};

/// `text` as a double-quoted YAML scalar.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar(value: &str, style: Style, tag: Option<&str>) -> String {
    let text = match style {
        // A plain scalar is never empty (that is a null) and stays valid where
        // it is written; one folded over a blank line holds a line break, and
        // is a string all the same.
        Style::Plain if !value.contains('\n') => value.to_owned(),
        Style::Plain | Style::Quoted => quoted(value),
    };
    match tag {
        Some(tag) => format!("{tag} {text}"),
        None => text,
    }
}

fn key(k: &Key) -> String {
    match k.style {
        Style::Plain if !k.text.is_empty() => k.text.clone(),
        _ => quoted(&k.text),
    }
}

/// A node that fits on its key's (or dash's) line.
fn inline(node: &Node) -> Option<String> {
    match node {
        Node::Alias(named) => inline(named),
        Node::Null(_) => Some("null".into()),
        Node::Scalar { value, style, tag } => Some(scalar(value, *style, tag.as_deref())),
        Node::Seq(items) if items.is_empty() => Some("[]".into()),
        Node::Map(entries) if entries.is_empty() => Some("{}".into()),
        _ => None,
    }
}

fn write(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        // What Helm reads an alias as: the node it names.
        Node::Alias(named) => write(named, indent, out),
        Node::Map(entries) => {
            for (k, v) in entries {
                match inline(v) {
                    Some(text) => out.push_str(&format!("{pad}{}: {text}\n", key(k))),
                    None => {
                        out.push_str(&format!("{pad}{}:\n", key(k)));
                        write(v, indent + 2, out);
                    }
                }
            }
        }
        Node::Seq(items) => {
            for item in items {
                match inline(item) {
                    Some(text) => out.push_str(&format!("{pad}- {text}\n")),
                    None => {
                        out.push_str(&format!("{pad}-\n"));
                        write(item, indent + 2, out);
                    }
                }
            }
        }
        other => {
            if let Some(text) = inline(other) {
                out.push_str(&format!("{pad}{text}\n"));
            }
        }
    }
}

/// The merged values as a YAML document; `{}` when there are none.
pub fn emit(node: Option<&Node>) -> String {
    match node {
        Some(node @ Node::Map(entries)) if !entries.is_empty() => {
            let mut out = String::new();
            write(node, 0, &mut out);
            out
        }
        _ => "{}\n".into(),
    }
}
