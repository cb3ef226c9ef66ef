//! One commit of the GitOps repository, read through the Git Data API as
//! little as needed: trees are walked one directory at a time (a freight
//! directory gains an entry per release, so the whole repository is never
//! listed), each tree is fetched once, and file contents only when asked for.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::GitOpsError;
use crate::github::git_data::{GitData, TreeEntry};

/// A file as a tree lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub mode: String,
    pub sha: String,
}

/// Files under a directory: path relative to it → mode and blob sha.
pub type Listing = BTreeMap<String, Listed>;

pub struct Snapshot<'a> {
    api: &'a dyn GitData,
    /// The commit read, and its root tree.
    pub head: String,
    pub root: String,
    trees: HashMap<String, Vec<TreeEntry>>,
    /// Blobs seen in listings: they exist, so they need not be created again.
    known_blobs: HashSet<String>,
}

impl<'a> Snapshot<'a> {
    pub async fn at(api: &'a dyn GitData, head: String) -> Result<Self, GitOpsError> {
        let root = api.commit_tree(&head).await?;
        Ok(Self { api, head, root, trees: HashMap::new(), known_blobs: HashSet::new() })
    }

    /// A tree not yet committed (to read back what was just made).
    pub fn of_tree(api: &'a dyn GitData, root: String) -> Self {
        Self { api, head: String::new(), root, trees: HashMap::new(), known_blobs: HashSet::new() }
    }

    pub fn knows_blob(&self, sha: &str) -> bool {
        self.known_blobs.contains(sha)
    }

    async fn entries(&mut self, tree: &str) -> Result<&[TreeEntry], GitOpsError> {
        if !self.trees.contains_key(tree) {
            let listed = self.api.tree(tree, false).await?;
            self.trees.insert(tree.to_owned(), listed.entries);
        }
        Ok(self.trees.get(tree).map(Vec::as_slice).unwrap_or_default())
    }

    /// The entry at `path` (`/`-separated, from the root), if there is one.
    pub async fn entry(&mut self, path: &str) -> Result<Option<TreeEntry>, GitOpsError> {
        let mut tree = self.root.clone();
        let parts: Vec<&str> = path.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let Some(found) = self.entries(&tree).await?.iter().find(|e| e.path == *part).cloned() else { return Ok(None) };
            if i + 1 == parts.len() {
                if found.kind == "blob" {
                    self.known_blobs.insert(found.sha.clone());
                }
                return Ok(Some(found));
            }
            if found.kind != "tree" {
                return Err(GitOpsError::NotADirectory { path: parts[..=i].join("/") });
            }
            tree = found.sha;
        }
        Ok(None)
    }

    /// Every file under the directory `path`; `None` when it does not exist.
    pub async fn files(&mut self, path: &str) -> Result<Option<Listing>, GitOpsError> {
        let Some(dir) = self.entry(path).await? else { return Ok(None) };
        if dir.kind != "tree" {
            return Err(GitOpsError::NotADirectory { path: path.to_owned() });
        }
        let tree = self.api.tree(&dir.sha, true).await?;
        if tree.truncated {
            return Err(GitOpsError::Unexpected { message: format!("{path}: GitHub truncated the listing of this directory") });
        }
        let mut out = Listing::new();
        for e in tree.entries.into_iter().filter(|e| e.kind != "tree") {
            if e.kind == "blob" {
                self.known_blobs.insert(e.sha.clone());
            }
            // A submodule (kind "commit") is listed too, so that it compares as different.
            out.insert(e.path, Listed { mode: e.mode, sha: e.sha });
        }
        Ok(Some(out))
    }

    /// The content of the file at `path`; `None` when there is no file there.
    pub async fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, GitOpsError> {
        match self.entry(path).await? {
            Some(e) if e.kind == "blob" => Ok(Some(self.api.blob(&e.sha).await?)),
            Some(_) => Err(GitOpsError::NotAFile { path: path.to_owned() }),
            None => Ok(None),
        }
    }
}
