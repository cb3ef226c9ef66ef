"""The check runs and commit statuses of the fake GitHub (``FakeGitHub``
mixes this in): objects built as GitHub's API returns them, create and update
bodies merged as GitHub merges them, and what a test reads back. Callers of
the ``_create``/``_update`` methods hold the server's lock."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ChecksAndStatuses:
    """Needs ``url``, ``_lock``, ``_ids``, ``_check_runs``, ``_check_run_meta``
    and ``_statuses`` from the class it is mixed into."""

    # -- reading results -------------------------------------------------------

    def check_runs(self) -> list[dict[str, Any]]:
        """Created check runs, updates merged, in creation order.

        Each is the API object GitHub would return now, plus ``owner``,
        ``repo``, ``annotations`` (all, accumulated), ``actions`` and
        ``requests`` (the create and update bodies as sent).
        """
        with self._lock:
            return [
                {**copy.deepcopy(run), **copy.deepcopy(self._check_run_meta[run_id])}
                for run_id, run in self._check_runs.items()
            ]

    def statuses(self) -> list[dict[str, Any]]:
        """Created commit statuses (API objects plus ``owner``, ``repo``, ``sha``)."""
        with self._lock:
            return copy.deepcopy(self._statuses)

    def _same_repo(self, run_id: int, params: dict[str, str]) -> bool:
        meta = self._check_run_meta[run_id]
        return (meta["owner"].lower(), meta["repo"].lower()) == (
            params["owner"].lower(), params["repo"].lower())

    # -- object construction (callers hold the lock) --------------------------

    def _create_check_run(self, body: dict, params: dict[str, str]) -> dict:
        run_id = next(self._ids)
        owner, repo = params["owner"], params["repo"]
        run = {
            "id": run_id,
            "name": body["name"],
            "node_id": f"CR_fake{run_id}",
            "head_sha": body["head_sha"],
            "external_id": body.get("external_id", ""),
            "url": f"{self.url}/repos/{owner}/{repo}/check-runs/{run_id}",
            "html_url": f"https://github.com/{owner}/{repo}/runs/{run_id}",
            "details_url": body.get("details_url"),
            "status": "queued",
            "conclusion": None,
            "started_at": now_iso(),
            "completed_at": None,
            "output": {
                "title": None,
                "summary": None,
                "text": None,
                "annotations_count": 0,
                "annotations_url": f"{self.url}/repos/{owner}/{repo}/check-runs/{run_id}/annotations",
            },
            "check_suite": {"id": run_id + 1_000_000},
            "app": _GITHUB_ACTIONS_APP,
            "pull_requests": [],
        }
        self._check_runs[run_id] = run
        self._check_run_meta[run_id] = {
            "owner": owner, "repo": repo, "annotations": [], "actions": [], "requests": [],
        }
        self._apply(run_id, body)
        return copy.deepcopy(run)

    def _update_check_run(self, run_id: int, body: dict) -> dict:
        self._apply(run_id, body)
        return copy.deepcopy(self._check_runs[run_id])

    def _apply(self, run_id: int, body: dict) -> None:
        """Merge a create/update body the way GitHub does."""
        run, meta = self._check_runs[run_id], self._check_run_meta[run_id]
        meta["requests"].append(copy.deepcopy(body))
        for key in ("name", "details_url", "external_id", "started_at", "completed_at", "status"):
            if key in body:
                run[key] = body[key]
        if "conclusion" in body:
            # "Providing conclusion will automatically set the status to completed."
            run["conclusion"] = body["conclusion"]
            run["status"] = "completed"
        if run["status"] == "completed" and run["completed_at"] is None:
            run["completed_at"] = now_iso()
        output = body.get("output")
        if output:
            for key in ("title", "summary", "text"):
                if key in output:
                    run["output"][key] = output[key]
            # Annotations accumulate across requests.
            meta["annotations"].extend(copy.deepcopy(output.get("annotations", [])))
            run["output"]["annotations_count"] = len(meta["annotations"])
        if "actions" in body:
            meta["actions"] = copy.deepcopy(body["actions"])

    def _create_status(self, body: dict, params: dict[str, str]) -> dict:
        status_id = next(self._ids)
        owner, repo, sha = params["owner"], params["repo"], params["sha"]
        ts = now_iso()
        obj = {
            "url": f"{self.url}/repos/{owner}/{repo}/statuses/{sha}",
            "avatar_url": "https://avatars.githubusercontent.com/in/15368?v=4",
            "id": status_id,
            "node_id": f"SC_fake{status_id}",
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context", "default"),
            "created_at": ts,
            "updated_at": ts,
            "creator": _GITHUB_ACTIONS_BOT,
        }
        self._statuses.append({**copy.deepcopy(obj), "owner": owner, "repo": repo, "sha": sha})
        return obj


_GITHUB_ACTIONS_BOT = {
    "login": "github-actions[bot]",
    "id": 41898282,
    "node_id": "MDM6Qm90NDE4OTgyODI=",
    "avatar_url": "https://avatars.githubusercontent.com/in/15368?v=4",
    "gravatar_id": "",
    "url": "https://api.github.com/users/github-actions%5Bbot%5D",
    "html_url": "https://github.com/apps/github-actions",
    "followers_url": "https://api.github.com/users/github-actions%5Bbot%5D/followers",
    "following_url": "https://api.github.com/users/github-actions%5Bbot%5D/following{/other_user}",
    "gists_url": "https://api.github.com/users/github-actions%5Bbot%5D/gists{/gist_id}",
    "starred_url": "https://api.github.com/users/github-actions%5Bbot%5D/starred{/owner}{/repo}",
    "subscriptions_url": "https://api.github.com/users/github-actions%5Bbot%5D/subscriptions",
    "organizations_url": "https://api.github.com/users/github-actions%5Bbot%5D/orgs",
    "repos_url": "https://api.github.com/users/github-actions%5Bbot%5D/repos",
    "events_url": "https://api.github.com/users/github-actions%5Bbot%5D/events{/privacy}",
    "received_events_url": "https://api.github.com/users/github-actions%5Bbot%5D/received_events",
    "type": "Bot",
    "site_admin": False,
}

_GITHUB_ACTIONS_APP = {
    "id": 15368,
    "slug": "github-actions",
    "node_id": "MDM6QXBwMTUzNjg=",
    "client_id": "Iv1.05c79e9ad1f6bdfa",
    "owner": {
        "login": "github",
        "id": 9919,
        "node_id": "MDEyOk9yZ2FuaXphdGlvbjk5MTk=",
        "avatar_url": "https://avatars.githubusercontent.com/u/9919?v=4",
        "gravatar_id": "",
        "url": "https://api.github.com/users/github",
        "html_url": "https://github.com/github",
        "followers_url": "https://api.github.com/users/github/followers",
        "following_url": "https://api.github.com/users/github/following{/other_user}",
        "gists_url": "https://api.github.com/users/github/gists{/gist_id}",
        "starred_url": "https://api.github.com/users/github/starred{/owner}{/repo}",
        "subscriptions_url": "https://api.github.com/users/github/subscriptions",
        "organizations_url": "https://api.github.com/users/github/orgs",
        "repos_url": "https://api.github.com/users/github/repos",
        "events_url": "https://api.github.com/users/github/events{/privacy}",
        "received_events_url": "https://api.github.com/users/github/received_events",
        "type": "Organization",
        "site_admin": False,
    },
    "name": "GitHub Actions",
    "description": "Automate your workflow from idea to production",
    "external_url": "https://help.github.com/en/actions",
    "html_url": "https://github.com/apps/github-actions",
    "created_at": "2018-07-30T09:30:17Z",
    "updated_at": "2019-12-10T19:04:12Z",
    "permissions": {"checks": "write", "contents": "write", "metadata": "read"},
    "events": ["check_run", "check_suite", "push", "pull_request"],
}

