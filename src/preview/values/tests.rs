//! yaml-merge's rules, as read in kyaml v0.20.1 (walk/walk.go, walk/map.go,
//! merge2/merge2.go, merge2/smpdirective.go, yaml/fns.go FieldSetter) and
//! Kargo's pkg/yaml/merge.go; the first test is Kargo's own test case.

use super::*;

fn merged(files: &[&str]) -> String {
    let named: Vec<(String, &str)> = files.iter().enumerate().map(|(i, t)| (format!("f{i}.yaml"), *t)).collect();
    emit(merge_files(named.iter().map(|(n, t)| (n.as_str(), *t))).unwrap().as_ref())
}

fn merge_error(files: &[&str]) -> String {
    let named: Vec<(String, &str)> = files.iter().enumerate().map(|(i, t)| (format!("f{i}.yaml"), *t)).collect();
    merge_files(named.iter().map(|(n, t)| (n.as_str(), *t))).unwrap_err().to_string()
}

#[test]
fn kargos_own_case_maps_merge_lists_replace() {
    // akuity/kargo pkg/yaml/merge_test.go "successful merge".
    let base = "\ncharacter:\n  name: Vader\n  ability: Force\n  affiliation: Empire\n  saberColor: red\nvehicles:\n- Star Destroyer";
    let overlay = "\ncharacter:\n  name: Luke # Alters character.name from the base\n  # ability: Force\n  affiliation: Rebel Alliance\n  \
                   saberColor: blue\n  siblings:\n  - Leia\nvehicles:\n- Millennium Falcon";
    assert_eq!(
        merged(&["", base, overlay]),
        "character:\n  name: Luke\n  ability: Force\n  affiliation: Rebel Alliance\n  saberColor: blue\n  siblings:\n    - Leia\n\
         vehicles:\n  - Millennium Falcon\n"
    );
}

#[test]
fn sequences_are_replaced_whole_even_of_named_maps() {
    // No schema and no inference: a list of maps with `name` keys is not merged by name.
    let base = "env:\n- name: A\n  value: '1'\n- name: B\n  value: '2'\n";
    let overlay = "env:\n- name: B\n  value: '3'\n";
    assert_eq!(merged(&[base, overlay]), "env:\n  -\n    name: B\n    value: \"3\"\n");
    // A later empty list replaces too; a missing one keeps the earlier.
    assert_eq!(merged(&["a: [1, 2]\n", "a: []\n"]), "a: []\n");
    assert_eq!(merged(&["a: [1, 2]\n", "b: 1\n"]), "a:\n  - 1\n  - 2\nb: 1\n");
}

#[test]
fn a_later_null_removes_the_key() {
    assert_eq!(merged(&["a: 1\nb: 2\n", "a: null\n"]), "b: 2\n");
    assert_eq!(merged(&["a: {x: 1}\nb: 2\n", "a: ~\n"]), "b: 2\n");
    assert_eq!(merged(&["a: [1]\nb: 2\n", "a:\n"]), "b: 2\n");
    // A null for a key the earlier files lack adds nothing.
    assert_eq!(merged(&["b: 2\n", "a: null\n"]), "b: 2\n");
}

#[test]
fn earlier_nulls_the_later_file_does_not_mention() {
    // Written nulls are kept (MakePersistentNullNode); an empty value is dropped.
    assert_eq!(merged(&["a: null\nb: ~\nc:\nd: 1\n", "d: 2\n"]), "a: null\nb: null\nd: 2\n");
    assert_eq!(merged(&["outer:\n  a: null\n  c:\n", "other: 1\n"]), "outer:\n  a: null\nother: 1\n");
    // With a single file nothing is walked: even `c:` stays.
    assert_eq!(merged(&["c:\nd: 1\n"]), "c: null\nd: 1\n");
}

#[test]
fn nulls_inside_a_mapping_only_the_later_file_has_are_dropped() {
    assert_eq!(merged(&["x: 1\n", "a:\n  b: null\n  c: 1\n"]), "x: 1\na:\n  c: 1\n");
    // An earlier null replaced by a mapping takes the mapping, its nulls dropped too.
    assert_eq!(merged(&["a: null\n", "a:\n  b: ~\n  c: 1\n"]), "a:\n  c: 1\n");
}

#[test]
fn scalars_override_and_keep_their_text() {
    // `yes`, `0x10`, `1e3` stay as written: Helm reads them as Kargo's merged file.
    assert_eq!(merged(&["a: 1\nb: x\n", "a: yes\nc: 0x10\nd: 1e3\n"]), "a: yes\nb: x\nc: 0x10\nd: 1e3\n");
    // Quoted stays a string; block scalars become double-quoted strings.
    assert_eq!(merged(&["a: 1\n", "a: '2'\nb: |\n  line one\n  line two\n"]), "a: \"2\"\nb: \"line one\\nline two\\n\"\n");
    assert_eq!(merged(&["t: !!str 10\n"]), "t: !!str 10\n");
}

#[test]
fn new_keys_are_appended_in_byte_order() {
    assert_eq!(merged(&["m:\n  z: 1\n", "m:\n  b: 2\n  a: 1\n"]), "m:\n  z: 1\n  a: 1\n  b: 2\n");
}

#[test]
fn different_kinds_are_an_error_naming_file_and_key() {
    let err = merge_error(&["a:\n  b: 1\n", "a:\n  b: [1]\n"]);
    assert_eq!(err, "values file f1.yaml: a.b: a sequence where the files before have a scalar; yaml-merge does not merge different kinds");
    let err = merge_error(&["a: 1\n", "a: {x: 1}\n"]);
    assert!(err.starts_with("values file f1.yaml: a: a mapping where the files before have a scalar"), "{err}");
    // Null is no kind: it may be replaced by anything.
    assert_eq!(merged(&["a: null\n", "a: [1]\n"]), "a:\n  - 1\n");
}

#[test]
fn patch_directives_in_the_later_file() {
    let base = "m:\n  a: 1\n  b: 2\nn: 1\n";
    assert_eq!(merged(&[base, "m:\n  $patch: replace\n  c: 3\n"]), "m:\n  c: 3\nn: 1\n");
    assert_eq!(merged(&[base, "m:\n  $patch: delete\n"]), "n: 1\n");
    assert_eq!(merged(&[base, "m:\n  $patch: merge\n  c: 3\n"]), "m:\n  a: 1\n  b: 2\n  c: 3\nn: 1\n");
    let err = merge_error(&[base, "m:\n  $patch: sideways\n"]);
    assert_eq!(err, "values file f1.yaml: m: unknown patch strategy \"sideways\"");
    // In a mapping the earlier files lack, a known directive is applied and
    // dropped; an unknown one is no error there, and stays as a plain key.
    assert_eq!(merged(&["n: 1\n", "m:\n  $patch: replace\n  c: 3\n"]), "n: 1\nm:\n  c: 3\n");
    assert_eq!(merged(&["n: 1\n", "m:\n  $patch: sideways\n  c: 3\n"]), "n: 1\nm:\n  $patch: sideways\n  c: 3\n");
    assert_eq!(merged(&["n: 1\n", "m:\n  $patch: delete\n  c: 3\n"]), "n: 1\n");
}

#[test]
fn files_without_a_document_are_skipped_and_a_null_file_clears() {
    assert_eq!(merged(&["", "# only a comment\n", "a: 1\n"]), "a: 1\n");
    assert_eq!(merged(&["a: 1\n", "~\n"]), "{}\n");
    // After a clearing file the next one is taken as it is, not walked: `c:` stays.
    assert_eq!(merged(&["a: 1\n", "null\n", "c:\nd: 2\n"]), "c: null\nd: 2\n");
    // Only the first document of a file is read, as kyaml's ReadFile reads it.
    assert_eq!(merged(&["a: 1\n---\nb: 2\n"]), "a: 1\n");
}

#[test]
fn aliases_are_dropped_where_yaml_merge_walks_as_kyaml_drops_them() {
    // kyaml's walker has no case for an alias node: the field goes (akuity/kargo#6740).
    let base = "db: &db mydb\nreadiness: *db\ndefaults: &d {image: x}\nother:\n  <<: *d\n  own: 1\nlist: [*db]\n";
    assert_eq!(merged(&[base, "flag: false\n"]), "db: mydb\ndefaults:\n  image: x\nother:\n  own: 1\nlist:\n  - mydb\nflag: false\n");
    // Also when the later file sets the field: the earlier alias decides its kind.
    assert_eq!(merged(&[base, "readiness: set\n"]).lines().find(|l| l.starts_with("readiness")), None);
    // And in the later file, where the earlier files have no such field.
    assert_eq!(merged(&["a: 1\n", "x: &x 2\ny: *x\n"]), "a: 1\nx: 2\n");
    // An alias where the earlier file has a scalar: kyaml's kind check fails.
    let err = merge_error(&["y: 1\n", "x: &x 2\ny: *x\n"]);
    assert_eq!(err, "values file f1.yaml: y: an alias where the files before have a scalar; yaml-merge does not merge different kinds");
    // A file on its own is not walked: Helm resolves its aliases.
    assert_eq!(merged(&["base: &b\n  x: 1\nother: *b\n"]), "base:\n  x: 1\nother:\n  x: 1\n");
}

#[test]
fn anchors_are_resolved_and_keys_must_be_unique() {
    assert_eq!(merged(&["base: &b\n  x: 1\nother: *b\n"]), "base:\n  x: 1\nother:\n  x: 1\n");
    let err = merge_error(&["a: 1\na: 2\n"]);
    assert_eq!(err, "values file f0.yaml: line 2: the key \"a\" appears twice in one mapping");
    let err = merge_error(&["- 1\n"]);
    assert_eq!(err, "values file f0.yaml: the document is a sequence; Helm values must be a mapping");
    let err = merge_error(&["a: [1\n"]);
    assert!(err.starts_with("values file f0.yaml: "), "{err}");
}

#[test]
fn kubernetes_objects_in_both_files_are_refused() {
    let obj = "extra:\n  apiVersion: apps/v1\n  kind: Deployment\n  spec: {replicas: 1}\n";
    let err = merge_error(&[obj, obj]);
    assert!(err.starts_with("values file f1.yaml: extra: a Kubernetes object (apiVersion and kind) in both files"), "{err}");
    // A custom resource has no schema in kyaml: merged as plain mappings.
    let cr = "extra:\n  apiVersion: example.com/v1\n  kind: Widget\n  size: 1\n";
    assert_eq!(merged(&[cr, "extra:\n  apiVersion: example.com/v1\n  kind: Widget\n  size: 2\n"]).lines().last(), Some("  size: 2"));
}

#[test]
fn what_is_written_reads_back_the_same() {
    let text = "a:\n  - - x\n    - y\n  - {}\n  - k: v\n    l: [1, 2]\nb: 'it''s'\nc: \"tab\\there\"\n\"\": empty key\nd: null\n";
    let first = merge_files([("x.yaml", text)]).unwrap();
    let again = merge_files([("y.yaml", emit(first.as_ref()).as_str())]).unwrap();
    assert_eq!(first, again);
    assert_eq!(emit(None), "{}\n");
}
