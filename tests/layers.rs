//! The layer rules of ARCHITECTURE.md, checked against the code: every
//! `crate::<module>` a source file names must sit in a lower layer than the
//! file's own top-level module (or be that module). The table is read from
//! ARCHITECTURE.md itself, so the document and the check cannot drift apart.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- layers:begin -->";
const END: &str = "<!-- layers:end -->";

/// Module name → layer, from the rows `| <layer> | `a`, `b` | ... |` between the markers.
fn layers(architecture: &str) -> BTreeMap<String, u32> {
    let start = architecture.find(BEGIN).expect("ARCHITECTURE.md has the layers:begin marker") + BEGIN.len();
    let end = architecture[start..].find(END).expect("ARCHITECTURE.md has the layers:end marker") + start;
    let mut map = BTreeMap::new();
    for row in architecture[start..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(layer) = cells[0].parse::<u32>() else { continue }; // the header and its rule
        for module in cells[1].split(',') {
            let module = module.trim().trim_matches('`').trim_end_matches('/');
            assert!(map.insert(module.to_owned(), layer).is_none(), "ARCHITECTURE.md names {module} twice");
        }
    }
    assert!(!map.is_empty(), "no layer rows between the markers");
    map
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named as `crate::<name>` in code (comments left out).
fn named_modules(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in source.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            assert!(!name.is_empty(), "`crate::{{...}}` groups hide what they import; name each module: {line}");
            names.push(name);
            rest = after;
        }
    }
    names
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layers = layers(&fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_str().unwrap();
        let module = first.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue; // the crate root declares every module; main is the program
        }
        let Some(&own) = layers.get(module) else {
            wrong.push(format!("src/{}: module {module} is in no layer of ARCHITECTURE.md", rel.display()));
            continue;
        };
        for named in named_modules(&fs::read_to_string(&file).unwrap()) {
            match layers.get(&named) {
                None => wrong.push(format!("src/{}: crate::{named} is in no layer of ARCHITECTURE.md", rel.display())),
                Some(&theirs) if named != module && theirs >= own => wrong.push(format!(
                    "src/{}: {module} (layer {own}) uses crate::{named} (layer {theirs}); a module may only use lower layers",
                    rel.display()
                )),
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What the core may not name: the network, the file system, processes, the
/// environment, the clock, async runtimes. Its only inputs are its arguments
/// (and the `Files` and `Sink` ports an edge hands it).
const IO: &[&str] =
    &["std::fs", "std::net", "std::process", "std::env", "SystemTime", "Instant", "tokio", "reqwest", "hyper", "tempfile", "thread::sleep"];

#[test]
fn the_core_does_no_io() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&core, &mut files);
    let mut found = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")) {
            for word in IO.iter().filter(|w| line.contains(**w)) {
                found.push(format!("{}:{}: {word}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(files.len() > 10, "src/core was read");
    assert!(found.is_empty(), "the core names I/O; move it to an edge (tree/, registry/, ...):\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_an_upward_import() {
    // The parser and the rule on a made-up case, so the test above cannot pass
    // by reading nothing.
    let layers = layers(&format!("{BEGIN}\n| Layer | Modules |\n| --- | --- |\n| 0 | `core/` |\n| 3 | `registry/`, `github/` |\n{END}"));
    assert_eq!(layers["core"], 0);
    assert_eq!(layers["github"], 3);
    let names =
        named_modules("use crate::commands::publish::X;\n// crate::action in a comment\nlet x = crate::core::percent::percent_encode(s);");
    assert_eq!(names, ["commands", "core"]);
}
