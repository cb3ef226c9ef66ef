"""A real registry (CNCF distribution 2.8, Debian's ``docker-registry``) per test
session, and a minimal stdlib OCI distribution client to seed and inspect it.

Quirks of distribution 2.8 worth knowing when writing tests (checked by hand):

- A GET/HEAD of an OCI manifest whose ``Accept`` header does not list
  ``application/vnd.oci.image.manifest.v1+json`` answers 404 MANIFEST_UNKNOWN
  ("OCI manifest found, but accept header does not support OCI manifests").
  ``OciClient`` always sends the OCI types.
- It has no referrers API and ignores ``artifactType``/``subject`` (stored bytes
  are kept verbatim, so digests are unaffected).
- Upload ``Location`` headers are absolute URLs built from the request's Host.
- ``REGISTRY_*`` environment variables override the config file, so the child
  gets an environment without them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from . import LOOPBACK, free_port

REGISTRY_BIN = os.environ.get("DOCKER_REGISTRY_BIN", "/usr/bin/docker-registry")
HTPASSWD_BIN = shutil.which("htpasswd") or "/usr/bin/htpasswd"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryStartError(RuntimeError):
    pass


class Registry:
    """A ``docker-registry serve`` child on 127.0.0.1:<random port>.

    >>> with Registry(auth=True) as reg:
    ...     reg.client().push_blob("x", b"{}")

    Attributes: ``host`` ("127.0.0.1:PORT"), ``url`` ("http://host"),
    ``username``/``password`` (None without auth), ``log_path``, ``storage_dir``.
    """

    def __init__(
        self,
        *,
        auth: bool = False,
        username: str = "capsule-user",
        password: str | None = None,
        realm: str = "release-capsule-test",
        start_timeout: float = 20.0,
        access_log: bool = True,
    ) -> None:
        self.auth = auth
        self.username = username if auth else None
        self.password = (password or secrets.token_urlsafe(12)) if auth else None
        self.realm = realm
        self.start_timeout = start_timeout
        self.access_log = access_log
        self.tmpdir = Path(tempfile.mkdtemp(prefix="rc-registry-"))
        self.storage_dir = self.tmpdir / "storage"
        self.storage_dir.mkdir()
        self.config_path = self.tmpdir / "config.yml"
        self.log_path = self.tmpdir / "registry.log"
        self.htpasswd_path = self.tmpdir / "htpasswd" if auth else None
        self.port: int | None = None
        self.host: str | None = None
        self.url: str | None = None
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "Registry":
        if not os.access(REGISTRY_BIN, os.X_OK):
            raise RegistryStartError(
                f"{REGISTRY_BIN} not found or not executable; run scripts/bootstrap"
            )
        if self.auth:
            self._write_htpasswd()
        # free_port() can race with other processes; a bind failure shows up as
        # an early exit, so try a few ports before giving up.
        last_error = None
        for _ in range(3):
            self.port = free_port()
            self.host = f"{LOOPBACK}:{self.port}"
            self.url = f"http://{self.host}"
            self._write_config()
            self._spawn()
            try:
                self._wait_ready()
                return self
            except RegistryStartError as e:
                last_error = e
                self._kill()
                if "address already in use" not in self.log_tail().lower():
                    break
        self.stop()
        raise last_error  # type: ignore[misc]

    def _write_htpasswd(self) -> None:
        # -B: bcrypt, the only hash distribution's htpasswd controller accepts.
        out = subprocess.run(
            [HTPASSWD_BIN, "-Bbn", self.username, self.password],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.htpasswd_path.write_text(out.strip() + "\n")

    def _write_config(self) -> None:
        # JSON is valid YAML, which spares us a YAML dependency.
        config = {
            "version": 0.1,
            "log": {
                "level": "warn",
                "formatter": "text",
                "accesslog": {"disabled": not self.access_log},
                "fields": {"service": "registry", "port": self.port},
            },
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                # No "cache" key: without a blob descriptor cache a deleted blob is
                # really gone. Upload purging would only walk the empty dir at start.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.host,
                # A fixed secret silences the "no secret" warning and keeps upload
                # state tokens valid for the life of this instance.
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
                # No "debug" key: distribution only starts the debug server when
                # http.debug.addr is set.
            },
        }
        if self.auth:
            config["auth"] = {
                "htpasswd": {"realm": self.realm, "path": str(self.htpasswd_path)}
            }
        self.config_path.write_text(json.dumps(config, indent=2))

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        if self._log_file:
            self._log_file.close()
        # distribution logs to stdout/stderr only; the file is our redirect.
        self._log_file = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.tmpdir,
            start_new_session=True,  # a Ctrl-C in pytest does not hit it twice
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RegistryStartError(
                    f"docker-registry exited with {self._proc.returncode} before "
                    f"answering on {self.url}/v2/.\n--- {self.log_path} (tail) ---\n"
                    f"{self.log_tail()}"
                )
            try:
                with _OPENER.open(f"{self.url}/v2/", timeout=1) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError as e:
                last = repr(e)
                time.sleep(0.05)
                continue
            if status in (200, 401):
                return
            last = f"HTTP {status}"
            time.sleep(0.05)
        raise RegistryStartError(
            f"docker-registry did not answer GET {self.url}/v2/ with 200/401 within "
            f"{self.start_timeout}s (last: {last}).\n--- {self.log_path} (tail) ---\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop(self) -> None:
        self._kill()
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- conveniences ----------------------------------------------------------

    def client(self, *, authenticated: bool = True) -> "OciClient":
        """An OciClient for this registry (with its credentials unless told not to)."""
        if self.auth and authenticated:
            return OciClient(self.url, self.username, self.password)
        return OciClient(self.url)

    def ref(self, repo: str, tag: str) -> str:
        """``127.0.0.1:PORT/repo:tag``, as the CLI and skopeo take references."""
        return f"{self.host}/{repo}:{tag}"


class HttpResponse:
    def __init__(self, status: int, headers, body: bytes) -> None:
        self.status = status
        self.headers = headers  # email.message.Message: case-insensitive .get()
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status} {self.body[:200]!r}>"


class OciClient:
    """A deliberately small OCI distribution client (stdlib only).

    For seeding registries and reading back what the CLI pushed. It follows no
    redirects and never retries: fakes and proxies see exactly one request per
    call. Works against Registry, FaultProxy and EvilRegistry alike.
    """

    def __init__(
        self, base_url: str, username: str | None = None, password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._auth = None
        if username is not None:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._auth = f"Basic {token}"

    def request(
        self, method: str, path_or_url: str, body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        if not url.startswith(f"http://{LOOPBACK}:"):
            raise ValueError(f"refusing non-loopback URL {url}")
        req = urllib.request.Request(url, data=body, method=method)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        if self._auth:
            req.add_header("Authorization", self._auth)
        try:
            with _OPENER.open(req, timeout=self.timeout) as r:
                return HttpResponse(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return HttpResponse(e.code, e.headers, e.read())

    # -- reads -----------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str, *, accept: str = MANIFEST_ACCEPT) -> HttpResponse:
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": accept})

    def head_manifest(self, repo: str, ref: str, *, accept: str = MANIFEST_ACCEPT) -> HttpResponse:
        return self.request("HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": accept})

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """Digest a tag resolves to, or None when absent."""
        r = self.head_manifest(repo, ref)
        return r.headers.get("Docker-Content-Digest") if r.status == 200 else None

    def get_blob(self, repo: str, digest: str) -> HttpResponse:
        return self.request("GET", f"/v2/{repo}/blobs/{digest}")

    def tags(self, repo: str) -> list[str]:
        r = self.request("GET", f"/v2/{repo}/tags/list")
        if r.status == 404:
            return []
        if r.status != 200:
            raise RuntimeError(f"tags/list {repo}: {r}")
        return sorted(r.json().get("tags") or [])

    # -- writes ----------------------------------------------------------------

    def push_blob(self, repo: str, data: bytes) -> str:
        """Monolithic upload (POST then PUT ?digest=); returns the digest."""
        digest = sha256_digest(data)
        if self.request("HEAD", f"/v2/{repo}/blobs/{digest}").status == 200:
            return digest
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"")
        if r.status != 202:
            raise RuntimeError(f"blob upload start for {repo}: {r}")
        location = r.headers["Location"]
        sep = "&" if "?" in location else "?"
        r = self.request(
            "PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", body=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if r.status != 201:
            raise RuntimeError(f"blob upload PUT for {repo}: {r}")
        return digest

    def push_manifest(
        self, repo: str, ref: str, manifest: bytes, media_type: str = OCI_MANIFEST
    ) -> str:
        r = self.request(
            "PUT", f"/v2/{repo}/manifests/{ref}", body=manifest,
            headers={"Content-Type": media_type},
        )
        if r.status != 201:
            raise RuntimeError(f"manifest PUT {repo}:{ref}: {r}")
        return r.headers.get("Docker-Content-Digest") or sha256_digest(manifest)

    def push_artifact(
        self, repo: str, tag: str, manifest: bytes, blobs: list[bytes],
        media_type: str = OCI_MANIFEST,
    ) -> str:
        """Push blobs, then the manifest under ``tag``; returns the manifest digest."""
        for blob in blobs:
            self.push_blob(repo, blob)
        return self.push_manifest(repo, tag, manifest, media_type)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# No proxies (an HTTP_PROXY in CI must not see loopback traffic) and no redirects.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
