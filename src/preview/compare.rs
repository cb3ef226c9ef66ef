//! One comparison of two renders: objects added, removed and changed, a
//! unified diff (similar's) of each, Secrets masked first. A change of the
//! image reference alone is not a diff per workload but one line: objects
//! whose only difference is the image are gathered into [`Comparison::image_only`].

use std::collections::BTreeSet;

use serde_yaml::Value;
use similar::{ChangeTag, TextDiff};

use super::objects::{to_text, ObjectKey, Objects};
use super::secrets::{is_secret, mask_pair};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

impl ChangeKind {
    pub fn word(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Changed => "changed",
            Self::Removed => "removed",
        }
    }
}

/// One object that differs, with its diff (Secret values already masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    pub key: ObjectKey,
    pub kind: ChangeKind,
    pub diff: String,
    pub lines_added: usize,
    pub lines_removed: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    pub changes: Vec<ObjectChange>,
    /// Objects that differ only in the image reference.
    pub image_only: Vec<ObjectKey>,
    /// The image references the old side had there.
    pub old_images: BTreeSet<String>,
}

impl Comparison {
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count() + if kind == ChangeKind::Changed { self.image_only.len() } else { 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.image_only.is_empty()
    }
}

/// The image the new side renders with: `repo` and the full reference set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repo: String,
    pub reference: String,
}

impl ImageRef {
    /// Every reference to the same repository in `text` (`<repo>@sha256:…`
    /// or `<repo>:<tag>`, the tag possibly followed by a digest), with where it ends.
    fn references(&self, text: &str) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(i) = text[from..].find(&self.repo).map(|i| i + from) {
            let boundary = text[..i].chars().next_back().is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_')));
            let mut end = i + self.repo.len();
            let rest = &text[end..];
            let tag_len = rest
                .strip_prefix(':')
                .map(|t| t.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))).unwrap_or(t.len()));
            if let Some(n) = tag_len.filter(|n| *n > 0) {
                end += 1 + n;
            }
            let rest = &text[end..];
            if let Some(hex) = rest.strip_prefix("@sha256:") {
                let n = hex.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(hex.len());
                if n == 64 {
                    end += "@sha256:".len() + 64;
                }
            }
            if boundary && end > i + self.repo.len() {
                found.push((i, end));
            }
            from = end.max(i + 1);
        }
        found
    }

    /// `value` with every reference to the repository replaced by this one;
    /// the references replaced go to `seen`.
    fn rewrite(&self, value: &Value, seen: &mut BTreeSet<String>) -> Value {
        match value {
            Value::String(s) => {
                let refs = self.references(s);
                if refs.is_empty() {
                    return value.clone();
                }
                let mut out = String::new();
                let mut last = 0;
                for (start, end) in refs {
                    seen.insert(s[start..end].to_owned());
                    out.push_str(&s[last..start]);
                    out.push_str(&self.reference);
                    last = end;
                }
                out.push_str(&s[last..]);
                Value::String(out)
            }
            Value::Sequence(items) => Value::Sequence(items.iter().map(|v| self.rewrite(v, seen)).collect()),
            Value::Mapping(m) => Value::Mapping(m.iter().map(|(k, v)| (k.clone(), self.rewrite(v, seen))).collect()),
            other => other.clone(),
        }
    }
}

/// A unified diff of two texts, and its added and removed lines.
fn unified(key: &ObjectKey, old: &str, new: &str) -> (String, usize, usize) {
    let diff = TextDiff::from_lines(old, new);
    let (mut added, mut removed) = (0, 0);
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Insert => added += 1,
            ChangeTag::Delete => removed += 1,
            ChangeTag::Equal => {}
        }
    }
    let name = key.to_string();
    let text = diff.unified_diff().context_radius(3).header(&format!("a/{name}"), &format!("b/{name}")).to_string();
    (text, added, removed)
}

fn change(key: &ObjectKey, kind: ChangeKind, old: Option<&Value>, new: Option<&Value>) -> ObjectChange {
    let (old, new) = if is_secret(key) { mask_pair(old, new) } else { (old.cloned(), new.cloned()) };
    let text = |v: Option<Value>| v.map(|v| to_text(&v)).unwrap_or_default();
    let (diff, lines_added, lines_removed) = unified(key, &text(old), &text(new));
    ObjectChange { key: key.clone(), kind, diff, lines_added, lines_removed }
}

/// `new` against `old`. `image`: the reference the new side renders with;
/// an object whose only difference is an older reference to the same
/// repository counts as an image-only change.
pub fn compare(old: &Objects, new: &Objects, image: Option<&ImageRef>) -> Comparison {
    let mut out = Comparison::default();
    let keys: BTreeSet<&ObjectKey> = old.objects.keys().chain(new.objects.keys()).collect();
    for key in keys {
        match (old.objects.get(key), new.objects.get(key)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                let mut seen = BTreeSet::new();
                if let Some(image) = image.filter(|_| !is_secret(key)) {
                    if &image.rewrite(a, &mut seen) == b && !seen.is_empty() {
                        out.image_only.push(key.clone());
                        out.old_images.extend(seen);
                        continue;
                    }
                }
                out.changes.push(change(key, ChangeKind::Changed, Some(a), Some(b)));
            }
            (None, Some(b)) => out.changes.push(change(key, ChangeKind::Added, None, Some(b))),
            (Some(a), None) => out.changes.push(change(key, ChangeKind::Removed, Some(a), None)),
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(text: &str) -> Objects {
        let mut o = Objects::default();
        o.add_documents(text, "t").unwrap();
        o
    }

    const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: REPLICAS\n  template:\n    spec:\n      containers:\n      - {name: web, image: IMAGE}\n";
    const NEW: &str = "ghcr.io/acme/app@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const OLD: &str = "ghcr.io/acme/app@sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn deploy(replicas: u32, image: &str) -> String {
        DEPLOY.replace("REPLICAS", &replicas.to_string()).replace("IMAGE", image)
    }

    #[test]
    fn added_removed_changed_with_a_unified_diff() {
        let old = objects(&format!("{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: gone}}\n", deploy(1, NEW)));
        let new = objects(&format!("{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\n", deploy(2, NEW)));
        let c = compare(&old, &new, None);
        let summary: Vec<(String, ChangeKind)> = c.changes.iter().map(|c| (c.key.to_string(), c.kind)).collect();
        assert_eq!(
            summary,
            [
                ("ConfigMap gone".to_owned(), ChangeKind::Removed),
                ("Deployment.apps web".to_owned(), ChangeKind::Changed),
                ("Service web".to_owned(), ChangeKind::Added)
            ]
        );
        let d = &c.changes[1];
        assert_eq!((d.lines_added, d.lines_removed), (1, 1));
        assert!(d.diff.starts_with("--- a/Deployment.apps web\n+++ b/Deployment.apps web\n@@ "), "{}", d.diff);
        assert!(d.diff.contains("\n-  replicas: 1\n+  replicas: 2\n"), "{}", d.diff);
        assert_eq!(c.count(ChangeKind::Added), 1);
        assert!(compare(&new, &new, None).is_empty());
    }

    #[test]
    fn the_image_alone_is_one_line_not_a_diff() {
        let image = ImageRef { repo: "ghcr.io/acme/app".into(), reference: NEW.into() };
        let c = compare(&objects(&deploy(1, OLD)), &objects(&deploy(1, NEW)), Some(&image));
        assert!(c.changes.is_empty(), "{c:?}");
        assert_eq!(c.image_only.len(), 1);
        assert_eq!(c.old_images.iter().collect::<Vec<_>>(), [OLD]);
        assert_eq!(c.count(ChangeKind::Changed), 1);
        // A tag reference counts too; another repository does not.
        let c = compare(&objects(&deploy(1, "ghcr.io/acme/app:git-0123")), &objects(&deploy(1, NEW)), Some(&image));
        assert_eq!(c.image_only.len(), 1);
        let c = compare(&objects(&deploy(1, "ghcr.io/acme/app-other:1")), &objects(&deploy(1, NEW)), Some(&image));
        assert_eq!((c.image_only.len(), c.changes.len()), (0, 1));
        // The image and something else: a diff, which shows both.
        let c = compare(&objects(&deploy(1, OLD)), &objects(&deploy(3, NEW)), Some(&image));
        assert_eq!((c.image_only.len(), c.changes.len()), (0, 1));
        assert!(c.changes[0].diff.contains(OLD) && c.changes[0].diff.contains("replicas: 3"));
    }

    #[test]
    fn a_secret_inside_a_list_or_with_its_kind_spelled_otherwise_is_masked() {
        // kubectl and Argo CD apply a List's items one by one: a Secret in one is a Secret.
        let listed = |password: &str| {
            format!(
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {{name: db}}\n  stringData: {{password: {password}}}\n"
            )
        };
        let spelled =
            |password: &str| format!("apiVersion: v1\nkind: secret\nmetadata: {{name: odd}}\nstringData: {{password: {password}}}\n");
        for render in [listed, spelled] {
            let c = compare(&objects(&render("hunter2-old-value")), &objects(&render("hunter2-new-value")), None);
            assert_eq!(c.changes.len(), 1, "{c:?}");
            let diff = &c.changes[0].diff;
            assert!(!diff.contains("hunter2"), "{diff}");
            assert!(diff.contains("password: (changed, 17 bytes)"), "{diff}");
            let added = compare(&Objects::default(), &objects(&render("hunter2-new-value")), None);
            assert!(!added.changes[0].diff.contains("hunter2"), "{}", added.changes[0].diff);
        }
    }
}
