//! Rendered manifests as Kubernetes objects, keyed by (API group, kind,
//! namespace, name) and normalized: mapping keys sorted, comments, document
//! order, file layout and formatting gone, so that only content compares.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
/// Identity is (group, kind, namespace, name); the order, kind first, is the
/// order a report lists objects in.
pub struct ObjectKey {
    pub kind: String,
    /// "" for the core group (`apiVersion: v1`).
    pub group: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    /// `Deployment.apps codeai/web`, `ConfigMap web` (kubectl's `kind.group`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        f.write_str(" ")?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        f.write_str(&self.name)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: document {index}: {message}")]
pub struct ObjectsError {
    pub source_name: String,
    pub index: usize,
    pub message: String,
}

/// The objects of one render (or of one branch's files).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects {
    pub objects: BTreeMap<ObjectKey, Value>,
    /// Documents that are not Kubernetes objects (no apiVersion or kind).
    pub skipped: usize,
}

/// `value` with every mapping's keys in order, recursively.
pub fn normalized(value: Value) -> Value {
    match value {
        Value::Mapping(m) => {
            let mut entries: Vec<(Value, Value)> = m.into_iter().map(|(k, v)| (k, normalized(v))).collect();
            entries.sort_by_cached_key(|(k, _)| match k {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap_or_default(),
            });
            Value::Mapping(entries.into_iter().collect::<Mapping>())
        }
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(normalized).collect()),
        Value::Tagged(t) => {
            let t = *t;
            Value::Tagged(Box::new(serde_yaml::value::TaggedValue { tag: t.tag, value: normalized(t.value) }))
        }
        other => other,
    }
}

/// A normalized object as YAML text: what diffs are made of.
pub fn to_text(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_else(|e| format!("# not representable as YAML: {e}\n"))
}

fn text_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(*key))?.as_str()
}

/// The key of an object, `None` for a document that is not one.
pub fn key_of(value: &Value) -> Option<ObjectKey> {
    let api_version = text_at(value, &["apiVersion"])?;
    let kind = text_at(value, &["kind"])?;
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let name = text_at(value, &["metadata", "name"])
        .map(str::to_owned)
        .or_else(|| text_at(value, &["metadata", "generateName"]).map(|g| format!("{g}(generated)")))
        .unwrap_or_default();
    Some(ObjectKey {
        group: group.to_owned(),
        kind: kind.to_owned(),
        namespace: text_at(value, &["metadata", "namespace"]).unwrap_or_default().to_owned(),
        name,
    })
}

impl Objects {
    /// Adds every document of `text` (`source_name` names it in errors). An
    /// object whose key is already there gets `#2`, `#3`… after its name, so
    /// nothing is lost from the comparison.
    pub fn add_documents(&mut self, text: &str, source_name: &str) -> Result<(), ObjectsError> {
        for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let error = |message: String| ObjectsError { source_name: source_name.to_owned(), index: i + 1, message };
            let value = Value::deserialize(document).map_err(|e| error(e.to_string()))?;
            match &value {
                Value::Null => continue,
                Value::Mapping(_) => {}
                other => return Err(error(format!("a {} where a Kubernetes object was expected", kind_name(other)))),
            }
            if let Some(items) = list_items(&value) {
                // kubectl and Argo CD apply a List's items one by one, so they
                // are compared (and a Secret among them masked) one by one.
                for item in items {
                    if !item.is_mapping() {
                        let list = text_at(&value, &["kind"]).unwrap_or_default();
                        return Err(error(format!(
                            "{list}: a {} among its items, where a Kubernetes object was expected",
                            kind_name(item)
                        )));
                    }
                    self.add(item.clone());
                }
                continue;
            }
            self.add(value);
        }
        Ok(())
    }

    fn add(&mut self, value: Value) {
        let Some(mut key) = key_of(&value) else {
            self.skipped += 1;
            return;
        };
        let base = key.name.clone();
        let mut n = 1;
        while self.objects.contains_key(&key) {
            n += 1;
            key.name = format!("{base}#{n}");
        }
        self.objects.insert(key, normalized(value));
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// The items of a list object (`kind: List`, `ConfigMapList`…: a kind that
/// ends in `List` and has an `items` sequence, as kubectl's meta.IsListType).
fn list_items(value: &Value) -> Option<&Vec<Value>> {
    let kind = text_at(value, &["kind"])?;
    text_at(value, &["apiVersion"])?;
    if !kind.ends_with("List") {
        return None;
    }
    value.get("items")?.as_sequence()
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Sequence(_) => "sequence",
        Value::Mapping(_) => "mapping",
        _ => "scalar",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_comments_and_formatting_are_not_content() {
        let a =
            "# Source: demo/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata: {b: \"2\", a: \"1\"}\n---\n\
                 apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {replicas: 1}\n";
        let b = "---\napiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 1\nmetadata:\n  namespace: shop\n  name: web\n---\n\n---\n\
                 kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: web\ndata:\n  a: '1'\n  b: '2'\n";
        let (mut x, mut y) = (Objects::default(), Objects::default());
        x.add_documents(a, "a").unwrap();
        y.add_documents(b, "b").unwrap();
        assert_eq!(x, y);
        let keys: Vec<String> = x.objects.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["ConfigMap web", "Deployment.apps shop/web"]);
        let text = to_text(&x.objects.values().next().unwrap().clone());
        assert_eq!(text, "apiVersion: v1\ndata:\n  a: '1'\n  b: '2'\nkind: ConfigMap\nmetadata:\n  name: web\n");
    }

    #[test]
    fn what_is_not_an_object() {
        let mut o = Objects::default();
        o.add_documents("release:\n  gitCommit: x\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n", "f")
            .unwrap();
        assert_eq!(o.skipped, 1);
        let names: Vec<&str> = o.objects.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["s", "s#2"]);
        let err = o.add_documents("a: 1\n---\n- x\n", "deploy/x.yaml").unwrap_err();
        assert_eq!(err.to_string(), "deploy/x.yaml: document 2: a sequence where a Kubernetes object was expected");
        assert!(o.add_documents("a: [1\n", "bad.yaml").unwrap_err().to_string().starts_with("bad.yaml: document 1: "));
    }

    #[test]
    fn a_lists_items_are_objects_of_their_own() {
        let mut o = Objects::default();
        o.add_documents("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n", "f")
            .unwrap();
        let keys: Vec<String> = o.objects.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["ConfigMap a", "Secret b"]);
        let err = o.add_documents("apiVersion: v1\nkind: List\nitems: [1]\n", "g").unwrap_err();
        assert_eq!(err.to_string(), "g: document 1: List: a scalar among its items, where a Kubernetes object was expected");
    }
}
