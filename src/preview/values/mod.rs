//! Helm values files merged the way Kargo's `yaml-merge` step merges them
//! (akuity/kargo pkg/yaml/merge.go: `merge2.Merge` of kustomize's kyaml,
//! the version Kargo pins, v0.20.1), so that the preview renders with the
//! values a promotion would render with.
//!
//! Why not serde_yaml: the rules depend on what serde's data model loses.
//! kyaml keeps an explicit `key: null` (or `~`) of an earlier file that a
//! later file does not mention, but drops an empty `key:`, and drops a field
//! whose value is an alias; and it writes
//! every scalar back as it was written, so Helm (a YAML 1.1 reader: `yes`
//! is `true`) reads the merged file as it would read Kargo's. So the files
//! are parsed into [`Node`]s that keep each scalar's text and style
//! (yaml-rust2's event parser), merged by [`merge`], and written back by
//! [`emit`].

mod emit;
mod merge;
#[cfg(test)]
mod tests;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

pub use self::emit::emit;
pub use self::merge::merge_files;

/// How a scalar was written; anything but plain is read as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    /// Single- or double-quoted, literal or folded: written back double-quoted.
    Quoted,
}

/// A parsed YAML node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// An alias (`*name`), with the node it names: kyaml's merge walker drops
    /// a field whose value is one, and Helm reads it as that node.
    Alias(Box<Node>),
    /// A scalar that is null (`~`, `null`, `Null`, `NULL`, an empty value, or
    /// tagged `!!null`), with its text: kyaml keeps `key: null` of an earlier
    /// file and drops `key:`, and only the text tells them apart.
    Null(String),
    Scalar {
        value: String,
        style: Style,
        tag: Option<String>,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key: merged by its text, as kyaml does (`Fields()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub text: String,
    pub style: Style,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null(_) => "null",
            Self::Scalar { .. } => "scalar",
            Self::Seq(_) => "sequence",
            Self::Map(_) => "mapping",
            Self::Alias(_) => "alias",
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null(_))
    }
    /// The value of `key` in a mapping.
    pub fn field(&self, key: &str) -> Option<&Node> {
        match self {
            Self::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("values file {file}: {message}")]
    Parse { file: String, message: String },
    #[error("values file {file}: {path}: {message}")]
    Merge { file: String, path: String, message: String },
}

/// YAML 1.2's core schema, as go-yaml v3 resolves a plain scalar.
fn plain_is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn tag_text(tag: &Tag) -> String {
    match tag.handle.as_str() {
        "!!" | "tag:yaml.org,2002:" => format!("!!{}", tag.suffix),
        "!" => format!("!{}", tag.suffix),
        handle => format!("!<{handle}{}>", tag.suffix),
    }
}

/// Builds [`Node`]s from parser events.
#[derive(Default)]
struct Builder {
    /// Open collections: a sequence, or a mapping with the key it waits a value for.
    stack: Vec<Open>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    error: Option<String>,
    documents: usize,
}

enum Open {
    Seq(usize, Vec<Node>),
    Map(usize, Vec<(Key, Node)>, Option<Key>),
}

impl Builder {
    fn fail(&mut self, message: String) {
        self.error.get_or_insert(message);
    }

    fn anchor(&mut self, id: usize, node: &Node) {
        if id > 0 {
            self.anchors.push((id, node.clone()));
        }
    }

    /// A finished node goes into its parent (or becomes the root).
    fn place(&mut self, node: Node, mark: Marker) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, pending)) => match pending.take() {
                Some(key) => {
                    if entries.iter().any(|(k, _)| k.text == key.text) {
                        let message = format!("line {}: the key {:?} appears twice in one mapping", mark.line(), key.text);
                        self.fail(message);
                    } else {
                        entries.push((key, node));
                    }
                }
                None => match node {
                    Node::Scalar { value, style, .. } => *pending = Some(Key { text: value, style }),
                    Node::Null(text) => *pending = Some(Key { text, style: Style::Plain }),
                    other => {
                        let message = format!("line {}: a {} as a mapping key is not supported", mark.line(), other.kind());
                        self.fail(message);
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::DocumentStart => self.documents += 1,
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.as_ref().map(tag_text);
                let node = match (style, tag.as_deref()) {
                    (_, Some("!!null")) => Node::Null(value),
                    (TScalarStyle::Plain, None) if plain_is_null(&value) => Node::Null(value),
                    (TScalarStyle::Plain, _) => Node::Scalar { value, style: Style::Plain, tag },
                    _ => Node::Scalar { value, style: Style::Quoted, tag },
                };
                self.anchor(anchor, &node);
                self.place(node, mark);
            }
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, node)) => {
                    let node = Node::Alias(Box::new(node.clone()));
                    self.place(node, mark);
                }
                None => self.fail(format!("line {}: an alias to an unknown anchor", mark.line())),
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(anchor, Vec::new())),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map(anchor, Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, node) = match self.stack.pop() {
                    Some(Open::Seq(anchor, items)) => (anchor, Node::Seq(items)),
                    Some(Open::Map(anchor, entries, _)) => (anchor, Node::Map(entries)),
                    None => return,
                };
                self.anchor(anchor, &node);
                self.place(node, mark);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

/// The first document of a values file, as kyaml's `ReadFile` reads it;
/// `None` for a file without one (empty, or only comments), which
/// yaml-merge skips.
pub fn parse(text: &str, file: &str) -> Result<Option<Node>, ValuesError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| ValuesError::Parse { file: file.to_owned(), message: e.to_string() })?;
    if let Some(message) = builder.error {
        return Err(ValuesError::Parse { file: file.to_owned(), message });
    }
    if builder.documents == 0 {
        return Ok(None);
    }
    match builder.root {
        Some(node @ (Node::Map(_) | Node::Null(_))) => Ok(Some(node)),
        Some(other) => Err(ValuesError::Parse {
            file: file.to_owned(),
            message: format!("the document is a {}; Helm values must be a mapping", other.kind()),
        }),
        None => Ok(None),
    }
}
