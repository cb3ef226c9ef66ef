//! Secrets in a preview: the values under a Secret's `data` and `stringData`
//! never appear in anything the preview writes. They are replaced before an
//! object is turned into text: a changed value reads `(changed, N bytes)`, an
//! added one `(added, N bytes)`, a removed one, or one of a Secret that is
//! added or removed whole, `(N bytes)`; an unchanged one is left out. As a
//! second line of defence, [`Scrubber`] cuts any such value that still turns
//! up in a text (a chart that copies one into an annotation).

use base64::Engine;
use serde_yaml::{Mapping, Value};

use super::objects::{ObjectKey, Objects};

const FIELDS: [&str; 2] = ["data", "stringData"];
/// Shorter values are not scrubbed from free text: "true" or "8080" would
/// blank out ordinary words of the report, and hide nothing worth hiding.
const MIN_SCRUBBED: usize = 6;

/// A Secret, however its kind is spelled and whatever group it names: what
/// is masked may be too much, never too little.
pub fn is_secret(key: &ObjectKey) -> bool {
    key.kind.eq_ignore_ascii_case("secret")
}

/// The size of a value in bytes: `data` holds base64 of the bytes.
fn size(field: &str, value: &Value) -> usize {
    let text = match value {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim_end().to_owned(),
    };
    if field == "data" {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text.trim()) {
            return bytes.len();
        }
    }
    text.len()
}

fn field<'a>(object: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    object.and_then(|o| o.get(name))
}

/// `(old, new)` with their Secret values replaced by descriptions.
pub fn mask_pair(old: Option<&Value>, new: Option<&Value>) -> (Option<Value>, Option<Value>) {
    let (mut masked_old, mut masked_new) = (old.cloned(), new.cloned());
    for name in FIELDS {
        let (before, after) = (field(old, name), field(new, name));
        if before.is_none() && after.is_none() {
            continue;
        }
        let entries = |v: Option<&Value>| v.and_then(Value::as_mapping).cloned().unwrap_or_default();
        let (before_map, after_map) = (entries(before), entries(after));
        let (mut old_out, mut new_out) = (Mapping::new(), Mapping::new());
        for (k, v) in &before_map {
            match after_map.get(k) {
                Some(same) if same == v => {}
                Some(_) => {
                    old_out.insert(k.clone(), Value::String(format!("({} bytes)", size(name, v))));
                }
                None => {
                    old_out.insert(k.clone(), Value::String(format!("({} bytes)", size(name, v))));
                }
            }
        }
        for (k, v) in &after_map {
            let label = match before_map.get(k) {
                Some(same) if same == v => continue,
                Some(_) if old.is_some() => format!("(changed, {} bytes)", size(name, v)),
                None if old.is_some() => format!("(added, {} bytes)", size(name, v)),
                _ => format!("({} bytes)", size(name, v)),
            };
            new_out.insert(k.clone(), Value::String(label));
        }
        // Something that is not a mapping is hidden whole.
        let replace = |target: &mut Option<Value>, original: Option<&Value>, out: Mapping| {
            if let (Some(Value::Mapping(t)), Some(original)) = (target.as_mut(), original) {
                let hidden = if original.is_mapping() { Value::Mapping(out) } else { Value::String("(hidden)".into()) };
                t.insert(Value::String(name.into()), hidden);
            }
        };
        replace(&mut masked_old, before, old_out);
        replace(&mut masked_new, after, new_out);
    }
    (masked_old, masked_new)
}

/// Cuts every Secret value of the given renders out of free text.
#[derive(Debug, Default, Clone)]
pub struct Scrubber {
    values: Vec<String>,
}

impl Scrubber {
    pub fn learn(&mut self, objects: &Objects) {
        for (key, object) in &objects.objects {
            if !is_secret(key) {
                continue;
            }
            for name in FIELDS {
                let Some(Value::Mapping(m)) = object.get(name) else { continue };
                for v in m.values() {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        // `stringData: {pin: 12345678}`: the API server takes it as text.
                        Value::Number(n) => n.to_string(),
                        _ => continue,
                    };
                    let mut forms = vec![text.clone()];
                    if name == "data" {
                        if let Ok(plain) = base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                            forms.extend(String::from_utf8(plain).ok());
                        }
                    } else {
                        forms.push(base64::engine::general_purpose::STANDARD.encode(&text));
                    }
                    // A value of several lines (a key, a certificate) shows in a
                    // diff line by line, each behind a marker and an indent.
                    let lines: Vec<String> =
                        forms.iter().filter(|f| f.contains('\n')).flat_map(|f| f.lines().map(|l| l.trim().to_owned())).collect();
                    self.values.extend(forms);
                    self.values.extend(lines);
                }
            }
        }
        self.values.retain(|v| v.trim().len() >= MIN_SCRUBBED);
        // Longest first, so that a value inside another is not cut first.
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        self.values.dedup();
    }

    pub fn scrub(&self, text: &str) -> String {
        self.values.iter().fold(text.to_owned(), |t, secret| t.replace(secret.as_str(), "(hidden)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preview::objects::to_text;

    fn secret(data: &str) -> Value {
        serde_yaml::from_str(&format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\n{data}")).unwrap()
    }

    #[test]
    fn values_become_descriptions() {
        // "hunter2-old" and "hunter2-new", base64.
        let old = secret("data: {password: aHVudGVyMi1vbGQ=, same: c2FtZQ==, gone: eA==}\nstringData: {token: s3cr3t-token}\n");
        let new = secret("data: {password: aHVudGVyMi1uZXc=, same: c2FtZQ==, fresh: eHl6}\nstringData: {token: s3cr3t-token}\n");
        let (o, n) = mask_pair(Some(&old), Some(&new));
        let (o, n) = (to_text(&o.unwrap()), to_text(&n.unwrap()));
        assert!(o.contains("password: (11 bytes)") && o.contains("gone: (1 bytes)"), "{o}");
        assert!(n.contains("password: (changed, 11 bytes)") && n.contains("fresh: (added, 3 bytes)"), "{n}");
        for text in [&o, &n] {
            assert!(!text.contains("same") && !text.contains("token"), "unchanged values are left out: {text}");
            assert!(!text.contains("aHVudGVy"), "{text}");
        }
        let (_, added) = mask_pair(None, Some(&new));
        let added = to_text(&added.unwrap());
        assert!(added.contains("password: (11 bytes)") && added.contains("token: (12 bytes)"), "{added}");
        let odd = secret("data: not-a-mapping\n");
        let (_, n) = mask_pair(None, Some(&odd));
        assert!(to_text(&n.unwrap()).contains("data: (hidden)"));
    }

    #[test]
    fn the_scrubber_knows_both_forms() {
        let mut objects = Objects::default();
        objects
            .add_documents("apiVersion: v1\nkind: Secret\nmetadata: {name: db}\ndata: {p: aHVudGVyMi1vbGQ=, short: eA==}\nstringData: {t: s3cr3t-token}\n", "x")
            .unwrap();
        let mut s = Scrubber::default();
        s.learn(&objects);
        let text = "a hunter2-old b aHVudGVyMi1vbGQ= c s3cr3t-token d czNjcjN0LXRva2Vu e x";
        assert_eq!(s.scrub(text), "a (hidden) b (hidden) c (hidden) d (hidden) e x");
    }

    #[test]
    fn the_scrubber_knows_numbers_and_each_line_of_a_long_value() {
        let mut objects = Objects::default();
        let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\nstringData:\n  pin: 12345678\n  key: |\n    -----BEGIN KEY-----\n    c2VjcmV0LWtleS1saW5lLW9uZQ\n    -----END KEY-----\n";
        objects.add_documents(secret, "x").unwrap();
        let mut s = Scrubber::default();
        s.learn(&objects);
        // A chart that copied both into a ConfigMap: the diff shows them so.
        let diff = "+  pin: \"12345678\"\n+  copy: |\n+    -----BEGIN KEY-----\n+    c2VjcmV0LWtleS1saW5lLW9uZQ\n";
        let scrubbed = s.scrub(diff);
        assert!(!scrubbed.contains("12345678") && !scrubbed.contains("c2VjcmV0LWtleS1saW5lLW9uZQ"), "{scrubbed}");
    }
}
