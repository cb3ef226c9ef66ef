//! The layer rules of ARCHITECTURE.md, checked against the code: every
//! top-level module a source file reaches (through `crate::`, `$crate::` or a
//! `super::` chain that climbs to the crate root, in a `use` tree or inline)
//! must sit in a lower layer than the file's own top-level module (or be that
//! module). The table is read from ARCHITECTURE.md itself, so the document and
//! the check cannot drift apart. Comments and string literals are blanked first,
//! `use` groups are expanded, and what would hide a dependency from this reading
//! (`#[path]`, aliasing the crate root) is refused outright.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

mod rust_source;

use rust_source::{code_only, expand, is_ident, module_path};

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

/// The top-level modules named in `source` (a file at `module`): through
/// `crate::` and `$crate::`, and through `super::` chains that climb to the
/// crate root (counting inline `mod x { ... }` blocks). Err for what hides a
/// dependency from this reading.
fn named_modules(source: &str, module: &[String]) -> Result<Vec<String>, String> {
    let code = code_only(source);
    for hidden in ["#[path", "# [path", "crate as ", "extern crate self"] {
        if code.contains(hidden) {
            return Err(format!("`{hidden}` hides which module is used; name modules by their paths"));
        }
    }
    let chars: Vec<char> = code.chars().collect();
    let mut names = Vec::new();
    let mut depth = 0usize; // brace depth
    let mut inline_mods: Vec<usize> = Vec::new(); // brace depth inside each open inline `mod x {`
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_word = i == 0 || !is_ident(chars[i - 1]);
        let rest: String = chars[i..chars.len().min(i + 64)].iter().collect();
        if c == '{' {
            depth += 1;
            // Is this the body of `mod name {`?
            let before: String = chars[i.saturating_sub(80)..i].iter().collect();
            let words: Vec<&str> = before.split_whitespace().collect();
            if words.len() >= 2 && words[words.len() - 2] == "mod" && words[words.len() - 1].chars().all(is_ident) {
                inline_mods.push(depth);
            }
        } else if c == '}' {
            if inline_mods.last() == Some(&depth) {
                inline_mods.pop();
            }
            depth = depth.saturating_sub(1);
        } else if starts_word && rest.starts_with("crate") && !chars.get(i + 5).copied().is_some_and(is_ident) {
            let after: String = chars[i + 5..].iter().collect();
            let after = after.trim_start();
            if let Some(path) = after.strip_prefix("::") {
                for p in expand(path) {
                    let first = p.split("::").next().unwrap_or("").to_owned();
                    if first.is_empty() {
                        let shown: String = path.chars().take(60).collect();
                        return Err(format!("an empty path after `crate::`: {shown}"));
                    }
                    names.push(first);
                }
            }
            i += 5;
            continue;
        } else if starts_word && rest.starts_with("super") && !chars.get(i + 5).copied().is_some_and(is_ident) {
            // Count the chain, then see whether it climbs to the crate root.
            let mut climbs = 0;
            let mut j = i;
            loop {
                let tail: String = chars[j..chars.len().min(j + 16)].iter().collect();
                let trimmed = tail.trim_start();
                let ws = tail.len() - trimmed.len();
                if trimmed.starts_with("super") && !trimmed[5..].starts_with(is_ident) {
                    climbs += 1;
                    j += ws + 5;
                    let t2: String = chars[j..chars.len().min(j + 8)].iter().collect();
                    let t2t = t2.trim_start();
                    if t2t.starts_with("::") {
                        j += t2.len() - t2t.len() + 2;
                        continue;
                    }
                }
                break;
            }
            let here = module.len() + inline_mods.len();
            if climbs >= here {
                let path: String = chars[j..].iter().collect();
                for p in expand(&path) {
                    let first = p.split("::").next().unwrap_or("").to_owned();
                    if !first.is_empty() {
                        names.push(first);
                    }
                }
            }
            i = j.max(i + 5);
            continue;
        }
        i += 1;
    }
    Ok(names)
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
        let named = match named_modules(&fs::read_to_string(&file).unwrap(), &module_path(rel)) {
            Ok(named) => named,
            Err(e) => {
                wrong.push(format!("src/{}: {e}", rel.display()));
                continue;
            }
        };
        for named in named {
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
/// environment, the clock, async runtimes and the crates that do I/O. Its only
/// inputs are its arguments (and the `Files` and `Sink` ports an edge hands it).
const IO_PATHS: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::os",
    "std::io::stdin",
    "std::io::stdout",
    "std::io::stderr",
    "std::thread::sleep",
    "std::time::SystemTime",
    "std::time::Instant",
    "tokio",
    "tokio_util",
    "reqwest",
    "hyper",
    "axum",
    "tower",
    "tower_http",
    "octocrab",
    "rustls",
    "tempfile",
];
/// Names that are I/O wherever they come from (a `use` of their parent module
/// would otherwise hide them).
const IO_WORDS: &[&str] = &["SystemTime", "Instant", "thread::sleep", "File::open", "File::create"];

/// Where the core names I/O in `source`: (line, what).
fn io_in(source: &str) -> Vec<(usize, String)> {
    let code = code_only(source);
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        for word in IO_WORDS.iter().filter(|w| line.contains(**w)) {
            found.push((n + 1, (*word).to_owned()));
        }
    }
    // Every path that starts at a word boundary, `use` groups expanded.
    let chars: Vec<char> = code.chars().collect();
    let mut line = 1;
    for i in 0..chars.len() {
        if chars[i] == '\n' {
            line += 1;
        }
        let starts_word = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == '$');
        let continues_path = i >= 2 && chars[i - 1] == ':' && chars[i - 2] == ':' && (i < 3 || !is_ident(chars[i - 3]));
        if !(starts_word && is_ident(chars[i]) && (i == 0 || chars[i - 1] != ':' || continues_path)) {
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 4000)].iter().collect();
        for path in expand(&rest) {
            let path = path.trim_start_matches("core::"); // `core::` is std's core, the same paths
            for io in IO_PATHS {
                let hit = path == *io || path.starts_with(&format!("{io}::"));
                if hit && !found.iter().any(|(l, w)| *l == line && w == io) {
                    found.push((line, (*io).to_owned()));
                }
            }
        }
    }
    found
}

#[test]
fn the_core_does_no_io() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&core, &mut files);
    let mut found = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        for (n, word) in io_in(&text) {
            found.push(format!("{}:{n}: {word}: {}", file.display(), text.lines().nth(n - 1).unwrap_or("").trim()));
        }
    }
    assert!(files.len() > 10, "src/core was read");
    assert!(found.is_empty(), "the core names I/O; move it to an edge (tree/, registry/, ...):\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_an_upward_import() {
    // The parser and the rule on made-up cases, so the tests above cannot pass
    // by reading nothing.
    let layers = layers(&format!("{BEGIN}\n| Layer | Modules |\n| --- | --- |\n| 0 | `core/` |\n| 3 | `registry/`, `github/` |\n{END}"));
    assert_eq!(layers["core"], 0);
    assert_eq!(layers["github"], 3);
    let at = |p: &str| module_path(Path::new(p));
    assert_eq!(at("github/client.rs"), ["github", "client"]);
    assert_eq!(at("github/mod.rs"), ["github"]);
    assert_eq!(at("failure.rs"), ["failure"]);
    assert!(at("lib.rs").is_empty());
    let names = |src: &str, file: &str| named_modules(src, &at(file)).unwrap();
    assert_eq!(
        names(
            "use crate::commands::publish::X;\n// crate::action in a comment\nlet s = \"crate::serve in a string\";\nlet x = crate::core::percent::percent_encode(s);",
            "github/client.rs"
        ),
        ["commands", "core"]
    );
    // Groups, nested groups and a path split over lines.
    assert_eq!(
        names(
            "use crate::{\n    core::ident::GitSha,\n    settings::{RegistryCredentials, self},\n};\nuse crate\n    ::action::X;",
            "registry/mod.rs"
        ),
        ["core", "settings", "settings", "action"]
    );
    // `super::` chains count only when they climb to the crate root.
    assert_eq!(names("use super::super::commands::X;\nuse super::Y;", "github/client.rs"), ["commands"]);
    assert_eq!(names("use super::settings::X;", "registry/mod.rs"), ["settings"]);
    assert!(names("use super::settings::X;", "registry/oci/mod.rs").is_empty(), "super of registry::oci is registry");
    assert_eq!(names("mod tests {\n    use super::super::super::serve::X;\n    use super::super::Y;\n}", "github/client.rs"), ["serve"]);
    assert!(names("mod tests {\n    use super::*;\n}\nfn f() { let _ = '{'; }", "github/client.rs").is_empty());
    // Macros name modules through `$crate::`.
    assert_eq!(names("macro_rules! m { () => { $crate::action::run() } }", "core/x.rs"), ["action"]);
    // What would hide a module from this reading is refused.
    assert!(named_modules("#[path = \"../commands/x.rs\"]\nmod x;", &at("github/mod.rs")).is_err());
    assert!(named_modules("use crate as root;\nuse root::commands::X;", &at("github/mod.rs")).is_err());
}

#[test]
fn the_io_check_sees_through_groups() {
    let words = |src: &str| io_in(src).into_iter().map(|(_, w)| w).collect::<Vec<_>>();
    assert_eq!(words("use std::{fs, io::Read};"), ["std::fs"]);
    assert_eq!(words("use std::{\n    env,\n    io::{self, stdout},\n};"), ["std::env", "std::io::stdout"]);
    assert_eq!(words("let t = std::time::SystemTime::now();"), ["SystemTime", "std::time::SystemTime"]);
    assert_eq!(words("use ::tokio::task;"), ["tokio"]);
    assert!(words("use std::io::{Read, Write};\n// std::fs in a comment\nlet s = \"std::fs\";").is_empty());
    assert!(words("use crate::core::tokio_free::X; let my_tokio = 1;").is_empty());
}
