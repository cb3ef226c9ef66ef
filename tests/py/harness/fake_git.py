"""The Git Data side of the fake GitHub, backed by real bare git repositories.

``FakeGitHub`` routes the operations of ../shared/github-api/operations-git.json
(and of operations-preview.json: compare-commits) here (bodies already validated against their request schemas). Every write is
done with git plumbing, so what the binary writes is checked by git itself:

- blobs: ``git hash-object -w``;
- trees: the base tree read into a private index (``read-tree``), entries
  applied (``update-index --cacheinfo`` / ``--force-remove``), ``write-tree``;
- commits: ``git commit-tree`` with the given author, committer and dates;
- refs: ``git update-ref <ref> <new> <old>`` (compare-and-swap on the expected
  old value) after ``merge-base --is-ancestor``: a non-fast-forward update is
  refused with GitHub's 422 "Update is not a fast forward".

Answers are checked against the operations' response schemas before they are
sent; a mismatch is a harness bug and is kept in ``response_errors``.

Scripting (attributes of ``GitRepos``):

- ``grant(owner, repo, token, "read" | "write")``: once any grant exists for a
  repository, other tokens get 404 (hidden) and read-only tokens get 403 on writes;
- ``before_ref_update = fn(repo: GitRepo) -> None``: runs just before a PATCH of
  a ref is applied, to commit something in between like another writer would.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

DOCS = "https://docs.github.com/rest/git"
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def git(repo: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    full_env = {"PATH": os.environ["PATH"], "GIT_DIR": str(repo), "HOME": str(repo),
                "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", **(env or {})}
    return subprocess.run(["git", *args], input=input, capture_output=True, env=full_env, check=check)


@dataclass
class GitRepo:
    owner: str
    name: str
    path: Path
    grants: dict[str, str] = field(default_factory=dict)  # token -> "read" | "write"
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def out(self, *args: str, **kw) -> str:
        return git(self.path, *args, **kw).stdout.decode().strip()

    def object_type(self, sha: str) -> str | None:
        if not SHA_RE.match(sha or ""):
            return None
        r = git(self.path, "cat-file", "-t", sha, check=False)
        return r.stdout.decode().strip() if r.returncode == 0 else None

    def head(self, branch: str) -> str | None:
        r = git(self.path, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
        return r.stdout.decode().strip() if r.returncode == 0 else None

    def commit_files(self, branch: str, files: dict[str, bytes | None], message: str) -> str:
        """Commits on ``branch`` as another writer would (None deletes)."""
        with self.lock:
            parent = self.head(branch)
            index = tempfile.mktemp(prefix="fake-git-index-")
            env = {"GIT_INDEX_FILE": index}
            try:
                git(self.path, "read-tree", parent or "--empty", env=env)
                for p, content in files.items():
                    if content is None:
                        _remove_from_index(self.path, p, env)
                    else:
                        blob = self.out("hash-object", "-w", "--stdin", input=content)
                        git(self.path, "update-index", "--add", "--cacheinfo", f"100644,{blob},{p}", env=env)
                tree = self.out("write-tree", env=env)
            finally:
                if os.path.exists(index):
                    os.unlink(index)
            args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
            commit = self.out(*args, env=_identity("Other Writer", "other@example.com", "2026-01-01T00:00:00Z"))
            git(self.path, "update-ref", f"refs/heads/{branch}", commit, parent or "0" * 40)
            return commit


def _remove_from_index(repo: Path, path: str, env: dict[str, str]) -> None:
    # --index-info with mode 0 removes; unlike --force-remove it needs no work tree.
    git(repo, "update-index", "--index-info", input=f"0 {'0' * 40}\t{path}\n".encode(), env=env)


def _identity(name: str, email: str, date: str) -> dict[str, str]:
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date}


class GitError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _not_found() -> GitError:
    return GitError(404, "Not Found")


class GitRepos:
    def __init__(self, root: Path, base_url: Callable[[], str]):
        self.root = root
        self._base_url = base_url
        self.repos: dict[tuple[str, str], GitRepo] = {}
        self.before_ref_update: Callable[[GitRepo], None] | None = None

    # -- setup -------------------------------------------------------------------

    def create(self, owner: str, name: str, branch: str = "main",
               files: dict[str, bytes] | None = None) -> GitRepo:
        path = self.root / owner / f"{name}.git"
        path.mkdir(parents=True)
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch", branch, str(path)], check=True)
        repo = GitRepo(owner, name, path)
        self.repos[(owner.lower(), name.lower())] = repo
        repo.commit_files(branch, files or {"README.md": b"GitOps repository\n"}, "Initial commit")
        return repo

    def grant(self, owner: str, name: str, token: str, level: str) -> None:
        self.repos[(owner.lower(), name.lower())].grants[token] = level

    # -- dispatch ------------------------------------------------------------------

    def handle(self, op: str, params: dict[str, str], query: str, body: Any,
               token: str) -> tuple[int, Any]:
        repo = self.repos.get((params["owner"].lower(), params["repo"].lower()))
        if repo is None:
            return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
        level = repo.grants.get(token, "none") if repo.grants else "write"
        if level == "none":
            return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
        writes = op in ("git/create-blob", "git/create-tree", "git/create-commit", "git/create-ref",
                        "git/update-ref", "repos/create-or-update-file-contents")
        if writes and level != "write":
            return 403, {"message": "Resource not accessible by personal access token",
                         "documentation_url": DOCS, "status": "403"}
        handler = getattr(self, "_" + op.replace("/", "_").replace("-", "_"), None)
        if handler is None:
            return 501, {"message": f"the fake does not implement {op}", "documentation_url": DOCS}
        try:
            return handler(repo, params, query, body)
        except GitError as e:
            return e.status, {"message": e.message, "documentation_url": DOCS, "status": str(e.status)}

    # -- answers -------------------------------------------------------------------

    def _api(self, repo: GitRepo, rest: str) -> str:
        return f"{self._base_url()}/repos/{repo.full_name}/{rest}"

    def _commit_object(self, repo: GitRepo, sha: str) -> dict:
        raw = repo.out("cat-file", "commit", sha)
        headers, _, message = raw.partition("\n\n")
        tree, parents, people = "", [], {}
        for line in headers.splitlines():
            key, _, value = line.partition(" ")
            if key == "tree":
                tree = value
            elif key == "parent":
                parents.append(value)
            elif key in ("author", "committer"):
                m = re.match(r"^(.*) <(.*)> (\d+) ([+-]\d{4})$", value)
                people[key] = {"name": m.group(1), "email": m.group(2), "date": _iso(int(m.group(3)))}
        full = git(repo.path, "cat-file", "commit", sha).stdout.decode()
        return {
            "sha": sha,
            "node_id": f"C_fake{sha[:12]}",
            "url": self._api(repo, f"git/commits/{sha}"),
            "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
            "author": people["author"],
            "committer": people["committer"],
            "tree": {"sha": tree, "url": self._api(repo, f"git/trees/{tree}")},
            "message": full.partition("\n\n")[2] if message else "",
            "parents": [{"sha": p, "url": self._api(repo, f"git/commits/{p}"),
                         "html_url": f"https://github.com/{repo.full_name}/commit/{p}"} for p in parents],
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                             "verified_at": None},
        }

    def _tree_object(self, repo: GitRepo, sha: str, recursive: bool) -> dict:
        args = ["ls-tree", "-l", "-z"] + (["-r", "-t"] if recursive else []) + [sha]
        entries = []
        for item in git(repo.path, *args).stdout.decode().split("\0"):
            if not item:
                continue
            meta, path = item.split("\t", 1)
            mode, kind, obj, size = meta.split()
            entry = {"path": path, "mode": mode, "type": kind, "sha": obj,
                     "url": self._api(repo, f"git/{'trees' if kind == 'tree' else 'blobs'}/{obj}")}
            if kind == "blob":
                entry["size"] = int(size)
            entries.append(entry)
        return {"sha": sha, "url": self._api(repo, f"git/trees/{sha}"), "tree": entries, "truncated": False}

    def _ref_object(self, repo: GitRepo, ref: str, sha: str) -> dict:
        return {"ref": f"refs/{ref}", "node_id": f"REF_fake{sha[:12]}", "url": self._api(repo, f"git/refs/{ref}"),
                "object": {"type": "commit", "sha": sha, "url": self._api(repo, f"git/commits/{sha}")}}

    # -- operations ------------------------------------------------------------------

    def _git_create_blob(self, repo, params, query, body):
        content = body["content"]
        data = base64.b64decode(content) if body.get("encoding") == "base64" else content.encode()
        sha = repo.out("hash-object", "-w", "--stdin", input=data)
        return 201, {"url": self._api(repo, f"git/blobs/{sha}"), "sha": sha}

    def _git_get_blob(self, repo, params, query, body):
        sha = params["file_sha"]
        if repo.object_type(sha) != "blob":
            raise _not_found()
        data = git(repo.path, "cat-file", "blob", sha).stdout
        b64 = base64.b64encode(data).decode()
        wrapped = "\n".join(b64[i:i + 60] for i in range(0, len(b64), 60)) + "\n"
        return 200, {"sha": sha, "node_id": f"B_fake{sha[:12]}", "size": len(data),
                     "url": self._api(repo, f"git/blobs/{sha}"), "content": wrapped, "encoding": "base64"}

    def _git_create_tree(self, repo, params, query, body):
        base = body.get("base_tree")
        if base is not None and repo.object_type(base) != "tree":
            raise GitError(422, "Invalid request.\n\nbase_tree is not a valid tree oid")
        index = tempfile.mktemp(prefix="fake-git-index-")
        env = {"GIT_INDEX_FILE": index}
        try:
            git(repo.path, "read-tree", base or "--empty", env=env)
            listed = set(git(repo.path, "ls-files", "-z", env=env).stdout.decode().split("\0"))
            for entry in body["tree"]:
                path, sha = entry.get("path", ""), entry.get("sha")
                if not path or path.startswith("/") or ".." in path.split("/") or "" in path.split("/"):
                    raise GitError(422, f"tree.path contains a malformed path component: {path!r}")
                if "sha" in entry and "content" in entry:
                    raise GitError(422, "Invalid request.\n\nOnly one of sha or content may be given")
                if "content" in entry:
                    sha = repo.out("hash-object", "-w", "--stdin", input=entry["content"].encode())
                elif sha is None:
                    if path not in listed:
                        # GitHub cannot delete what the base tree does not have.
                        raise GitError(422, f"GitRPC::BadObjectState: {path} does not exist in base_tree")
                    _remove_from_index(repo.path, path, env)
                    continue
                if entry.get("type") != "blob" or repo.object_type(sha) != "blob":
                    raise GitError(422, f"Invalid tree info: {path} must name an existing blob ({sha})")
                r = git(repo.path, "update-index", "--add", "--cacheinfo", f"{entry['mode']},{sha},{path}",
                        env=env, check=False)
                if r.returncode != 0:
                    raise GitError(422, f"GitRPC::BadObjectState: {r.stderr.decode().strip()}")
            tree = repo.out("write-tree", env=env)
        finally:
            if os.path.exists(index):
                os.unlink(index)
        return 201, self._tree_object(repo, tree, recursive=False)

    def _git_get_tree(self, repo, params, query, body):
        sha = params["tree_sha"]
        if repo.object_type(sha) != "tree":
            raise _not_found()
        return 200, self._tree_object(repo, sha, recursive="recursive=" in query)

    def _git_create_commit(self, repo, params, query, body):
        tree = body["tree"]
        if repo.object_type(tree) != "tree":
            raise GitError(422, "Tree SHA does not exist")
        args = ["commit-tree", tree]
        for p in body.get("parents", []):
            if repo.object_type(p) != "commit":
                raise GitError(422, "Parent SHA does not exist or is not a commit object")
            args += ["-p", p]
        author = body.get("author") or {"name": "fake-user", "email": "fake@example.com"}
        committer = body.get("committer") or author
        now = _iso_now()
        env = {"GIT_AUTHOR_NAME": author["name"], "GIT_AUTHOR_EMAIL": author["email"],
               "GIT_AUTHOR_DATE": author.get("date", now),
               "GIT_COMMITTER_NAME": committer["name"], "GIT_COMMITTER_EMAIL": committer["email"],
               "GIT_COMMITTER_DATE": committer.get("date", now)}
        # -F - reads the message as given: commit-tree does not clean it up.
        sha = repo.out(*args, "-F", "-", input=body["message"].encode(), env=env)
        return 201, self._commit_object(repo, sha)

    def _git_get_commit(self, repo, params, query, body):
        sha = params["commit_sha"]
        if repo.object_type(sha) != "commit":
            raise _not_found()
        return 200, self._commit_object(repo, sha)

    def _git_get_ref(self, repo, params, query, body):
        ref = params["ref"]
        r = git(repo.path, "rev-parse", "--verify", "--quiet", f"refs/{ref}", check=False)
        if r.returncode != 0:
            raise _not_found()
        return 200, self._ref_object(repo, ref, r.stdout.decode().strip())

    def _git_create_ref(self, repo, params, query, body):
        ref, sha = body["ref"], body["sha"]
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise GitError(422, "Reference name must start with 'refs/' and have at least two slashes")
        if repo.object_type(sha) != "commit":
            raise GitError(422, "Object does not exist")
        with repo.lock:
            r = git(repo.path, "update-ref", ref, sha, "0" * 40, check=False)
        if r.returncode != 0:
            raise GitError(422, "Reference already exists")
        return 201, self._ref_object(repo, ref[len("refs/"):], sha)

    def _git_update_ref(self, repo, params, query, body):
        ref, new = params["ref"], body["sha"]
        if self.before_ref_update is not None:
            self.before_ref_update(repo)
        if repo.object_type(new) != "commit":
            raise GitError(422, "Object does not exist")
        with repo.lock:
            r = git(repo.path, "rev-parse", "--verify", "--quiet", f"refs/{ref}", check=False)
            if r.returncode != 0:
                raise GitError(422, "Reference does not exist")
            old = r.stdout.decode().strip()
            if not body.get("force", False):
                if git(repo.path, "merge-base", "--is-ancestor", old, new, check=False).returncode != 0:
                    raise GitError(422, "Update is not a fast forward")
            # Compare-and-swap on the old value: git itself refuses a lost race.
            if git(repo.path, "update-ref", f"refs/{ref}", new, old, check=False).returncode != 0:
                raise GitError(422, "Update is not a fast forward")
        return 200, self._ref_object(repo, ref, new)

    def _rest_commit(self, repo: GitRepo, sha: str) -> dict:
        """A commit as the REST API's `commit` schema has it (repos/get-commit, compare)."""
        c = self._commit_object(repo, sha)
        return {
            "url": self._api(repo, f"commits/{sha}"), "sha": sha, "node_id": c["node_id"],
            "html_url": c["html_url"], "comments_url": self._api(repo, f"commits/{sha}/comments"),
            "commit": {"url": c["url"], "author": c["author"], "committer": c["committer"],
                       "message": c["message"], "comment_count": 0, "tree": c["tree"],
                       "verification": c["verification"]},
            "author": None, "committer": None,
            "parents": [{"sha": p["sha"], "url": p["url"], "html_url": p["html_url"]} for p in c["parents"]],
        }

    def _repos_get_commit(self, repo, params, query, body):
        r = git(repo.path, "rev-parse", "--verify", "--quiet", f"{params['ref']}^{{commit}}", check=False)
        if r.returncode != 0:
            raise GitError(422, f"No commit found for SHA: {params['ref']}")
        return 200, self._rest_commit(repo, r.stdout.decode().strip())

    def _repos_compare_commits(self, repo, params, query, body):
        """GET compare/{base}...{head} (operations-preview.json): the merge base
        by ``git merge-base``, the commits from it to head (``per_page`` of them)."""
        base, sep, head = params["basehead"].partition("...")
        if not sep:
            raise _not_found()
        shas = []
        for rev in (base, head):
            r = git(repo.path, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
            if r.returncode != 0:
                raise _not_found()
            shas.append(r.stdout.decode().strip())
        base_sha, head_sha = shas
        r = git(repo.path, "merge-base", base_sha, head_sha, check=False)
        if r.returncode != 0:
            raise _not_found()
        merge_base = r.stdout.decode().strip()
        ahead = repo.out("rev-list", f"{merge_base}..{head_sha}").split()
        behind = int(repo.out("rev-list", "--count", f"{merge_base}..{base_sha}"))
        status = ("identical" if not ahead and not behind else "ahead" if not behind
                  else "behind" if not ahead else "diverged")
        m = re.search(r"(?:^|&)per_page=(\d+)", query)
        per_page = min(int(m.group(1)), 100) if m else 250
        compare = f"https://github.com/{repo.full_name}/compare/{base}...{head}"
        return 200, {
            "url": self._api(repo, f"compare/{base}...{head}"), "html_url": compare,
            "permalink_url": f"https://github.com/{repo.full_name}/compare/{base_sha}...{head_sha}",
            "diff_url": compare + ".diff", "patch_url": compare + ".patch",
            "base_commit": self._rest_commit(repo, base_sha),
            "merge_base_commit": self._rest_commit(repo, merge_base),
            "status": status, "ahead_by": len(ahead), "behind_by": behind, "total_commits": len(ahead),
            "commits": [self._rest_commit(repo, c) for c in list(reversed(ahead))[:per_page]],
            "files": [],
        }

    def _repos_get_content(self, repo, params, query, body):
        m = re.search(r"(?:^|&)ref=([^&]+)", query)
        rev = m.group(1) if m else "HEAD"
        path = params["path"].strip("/")
        spec = f"{rev}:{path}" if path else f"{rev}^{{tree}}"
        r = git(repo.path, "rev-parse", "--verify", "--quiet", spec, check=False)
        if r.returncode != 0:
            raise _not_found()
        sha = r.stdout.decode().strip()

        def describe(p: str, kind: str, obj: str, size: int) -> dict:
            html = f"https://github.com/{repo.full_name}/{'tree' if kind == 'dir' else 'blob'}/{rev}/{p}"
            git_url = self._api(repo, f"git/{'trees' if kind == 'dir' else 'blobs'}/{obj}")
            url = self._api(repo, f"contents/{p}?ref={rev}")
            return {"type": kind, "size": size, "name": p.rsplit("/", 1)[-1], "path": p, "sha": obj, "url": url,
                    "git_url": git_url, "html_url": html,
                    "download_url": None if kind == "dir" else f"https://raw.githubusercontent.com/{repo.full_name}/{rev}/{p}",
                    "_links": {"self": url, "git": git_url, "html": html}}

        if repo.object_type(sha) == "tree":
            listing = self._tree_object(repo, sha, recursive=False)["tree"]
            return 200, [describe(f"{path}/{e['path']}".lstrip("/"), "dir" if e["type"] == "tree" else "file",
                                  e["sha"], e.get("size", 0)) for e in listing]
        data = git(repo.path, "cat-file", "blob", sha).stdout
        return 200, {**describe(path, "file", sha, len(data)), "encoding": "base64",
                     "content": base64.b64encode(data).decode()}


def _iso(epoch: int) -> str:
    import datetime
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_now() -> str:
    import time
    return _iso(int(time.time()))
