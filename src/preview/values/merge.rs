//! kyaml's merge walker (kustomize kyaml/yaml/walk and merge2, v0.20.1), as
//! `merge2.Merge(patch, target, MergeOptions{})` runs it for Kargo's
//! yaml-merge: files in order, each later file the patch.
//!
//! The rules, each followed by a unit test in `tests.rs`:
//! - The kind of a field is the kind of the first of (earlier, later) that is
//!   not null or missing; a later value of another kind is an error
//!   (`ErrorIfAnyInvalidAndNonNull`), not an override.
//! - Scalars: the later value, when the later file has the field.
//! - Sequences: replaced whole by the later one (values carry no OpenAPI
//!   schema, and the walker infers no associative lists).
//! - Mappings: merged key by key, keys in byte order, new keys appended.
//!   A later `$patch: delete` removes the mapping, `$patch: replace` replaces
//!   it, `$patch: merge` merges; the directive itself is dropped.
//! - Nulls: a later `null` removes the key. An earlier null that the later
//!   file does not mention is kept when it was written (`null`, `~`), and
//!   dropped when it was an empty value (`key:`). A null inside a mapping
//!   that only the later file has is dropped.
//! - A later file that is `null` as a whole clears everything before it, and
//!   the file after it then starts afresh.
//!
//! What is refused rather than guessed: a mapping holding a built-in
//! Kubernetes object (`apiVersion` and `kind`) in both files, which kyaml
//! would merge by that type's strategic-merge schema.

use super::{parse, Key, Node, ValuesError};

/// Where a merge stopped, and why.
struct Fault {
    path: String,
    message: String,
}

fn fault(path: &str, message: impl Into<String>) -> Fault {
    Fault { path: path.to_owned(), message: message.into() }
}

/// A field's merged value. `keep`: an earlier written null that kyaml keeps
/// (its `MakePersistentNullNode`); any other null removes the key.
struct Value {
    node: Node,
    keep: bool,
}

/// What merging a field came to: a value to set, or nothing (the key goes).
type Merged = Result<Option<Value>, Fault>;

fn set(node: Node) -> Merged {
    Ok(Some(Value { node, keep: false }))
}

/// Whether a mapping looks like a built-in Kubernetes object, for which kyaml
/// would find an OpenAPI schema (core, `apps`, `batch`, `*.k8s.io`...).
fn is_builtin_object(node: &Node) -> bool {
    let text = |key: &str| match node.field(key) {
        Some(Node::Scalar { value, .. }) => Some(value.as_str()),
        _ => None,
    };
    match (text("apiVersion"), text("kind")) {
        (Some(api_version), Some(kind)) if !kind.is_empty() => match api_version.rsplit_once('/') {
            None => true,
            Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
        },
        _ => false,
    }
}

/// The `$patch` directive of a later mapping, removed from it.
fn take_directive(node: &mut Node) -> Result<Directive, String> {
    let Node::Map(entries) = node else { return Ok(Directive::Merge) };
    let Some(i) = entries.iter().position(|(k, _)| k.text == "$patch") else { return Ok(Directive::Merge) };
    let directive = match &entries[i].1 {
        Node::Scalar { value, .. } if value == "delete" => Directive::Delete,
        Node::Scalar { value, .. } if value == "replace" => Directive::Replace,
        Node::Scalar { value, .. } if value == "merge" => Directive::Merge,
        Node::Scalar { value, .. } | Node::Null(value) => return Err(format!("unknown patch strategy {value:?}")),
        other => return Err(format!("unknown patch strategy (a {})", other.kind())),
    };
    entries.remove(i);
    Ok(directive)
}

#[derive(Debug, PartialEq, Eq)]
enum Directive {
    Merge,
    Replace,
    Delete,
}

fn present(node: Option<&Node>) -> Option<&Node> {
    node.filter(|n| !n.is_null())
}

/// Walks one field: `dest` from the files so far, `origin` from the later file.
fn walk(dest: Option<Node>, origin: Option<Node>, path: &str) -> Merged {
    let kind = present(dest.as_ref()).or(present(origin.as_ref())).map(Node::kind);
    // kyaml's Walker.Walk has no case for an alias, and checks no kinds then:
    // nothing comes back, and the field is cleared (akuity/kargo#6740).
    if kind == Some("alias") {
        return Ok(None);
    }
    for node in [dest.as_ref(), origin.as_ref()].into_iter().flatten().filter(|n| !n.is_null()) {
        if let Some(kind) = kind.filter(|k| *k != node.kind()) {
            let a = |kind: &str| if kind == "alias" { format!("an {kind}") } else { format!("a {kind}") };
            let message = format!("{} where the files before have {}; yaml-merge does not merge different kinds", a(node.kind()), a(kind));
            return Err(fault(path, message));
        }
    }
    match kind {
        // Scalars and (non-associative) sequences: the later value when there is one.
        Some("scalar" | "sequence") => origin.or(dest).map_or(Ok(None), set),
        // Mappings, and fields null on both sides, are walked as mappings.
        _ => walk_map(dest, origin, path),
    }
}

/// kyaml's `Merger.VisitMap`, then each field of the result and of `origin`.
fn walk_map(dest: Option<Node>, mut origin: Option<Node>, path: &str) -> Merged {
    if let (Some(d), Some(o)) = (&dest, &origin) {
        if is_builtin_object(d) && is_builtin_object(o) {
            return Err(fault(
                path,
                "a Kubernetes object (apiVersion and kind) in both files: Kargo's yaml-merge merges those by \
                 Kubernetes' strategic-merge rules, which the preview does not reproduce",
            ));
        }
    }
    let target = if dest.as_ref().is_none_or(Node::is_null) {
        // kyaml ignores a bad directive here (`ps, _ :=`); it is dropped all the same.
        let directive = origin.as_mut().and_then(|o| take_directive(o).ok());
        if directive == Some(Directive::Delete) {
            return Ok(None);
        }
        match (&origin, dest) {
            (None, Some(Node::Null(text))) if !text.is_empty() => return Ok(Some(Value { node: Node::Null(text), keep: true })),
            (None, _) => return Ok(None),
            (Some(o), _) => o.clone(),
        }
    } else if origin.as_ref().is_some_and(Node::is_null) {
        return Ok(None);
    } else {
        let directive = match origin.as_mut() {
            Some(o) => take_directive(o).map_err(|m| fault(path, m))?,
            None => Directive::Merge,
        };
        match (directive, dest, &origin) {
            (Directive::Delete, _, _) => return Ok(None),
            (Directive::Replace, _, Some(o)) => o.clone(),
            (_, Some(d), _) => d,
            (_, None, _) => return Ok(None),
        }
    };
    let Node::Map(_) = target else { return set(target) };
    let mut target = target;
    let mut names: Vec<String> = Vec::new();
    for node in [Some(&target), origin.as_ref()].into_iter().flatten() {
        if let Node::Map(entries) = node {
            names.extend(entries.iter().map(|(k, _)| k.text.clone()));
        }
    }
    names.sort();
    names.dedup();
    for name in names {
        let child = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
        let value = walk(target.field(&name).cloned(), origin.as_ref().and_then(|o| o.field(&name)).cloned(), &child)?;
        set_field(&mut target, &name, value, origin.as_ref());
    }
    set(target)
}

/// kyaml's `FieldSetter`: nothing, or a null that is not kept, removes the
/// key; a key that is there keeps its place; a new one is appended.
fn set_field(target: &mut Node, name: &str, value: Option<Value>, origin: Option<&Node>) {
    let Node::Map(entries) = target else { return };
    let position = entries.iter().position(|(k, _)| k.text == name);
    match (value, position) {
        (None, Some(i)) => {
            entries.remove(i);
        }
        (Some(v), Some(i)) if v.node.is_null() && !v.keep => {
            entries.remove(i);
        }
        (None, None) => {}
        (Some(v), None) if v.node.is_null() && !v.keep => {}
        (Some(v), Some(i)) => entries[i].1 = v.node,
        (Some(v), None) => {
            let style = match origin {
                Some(Node::Map(e)) => e.iter().find(|(k, _)| k.text == name).map(|(k, _)| k.style),
                _ => None,
            };
            entries.push((Key { text: name.to_owned(), style: style.unwrap_or(super::Style::Plain) }, v.node));
        }
    }
}

/// Kargo's `MergeFiles` over `(name, text)` files in order: the merged
/// values, or `None` when nothing is left (an empty output file).
pub fn merge_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Option<Node>, ValuesError> {
    let mut target: Option<Node> = None;
    for (file, text) in files {
        let Some(patch) = parse(text, file)? else { continue };
        target = match target {
            None => Some(patch),
            Some(dest) => walk(Some(dest), Some(patch), "")
                .map_err(|f| ValuesError::Merge {
                    file: file.to_owned(),
                    path: if f.path.is_empty() { "(root)".into() } else { f.path },
                    message: f.message,
                })?
                // A later file that is null as a whole leaves nothing: the next starts afresh.
                .map(|v| v.node),
        };
    }
    Ok(target)
}
