"""A fake OCI registry that serves whatever a test registers, and builders for
capsule archives (valid and malicious) and capsule manifests.

The registry is for the ``verify``/pull side: it happily serves content a real
registry would refuse (blobs under digests that do not match, manifests with a
lying ``Docker-Content-Digest``), so the CLI's own checks are what is tested.

    with EvilRegistry() as evil:
        layer = evil_layer("dotdot")
        digest = evil.add_capsule("acme/capsule", "git-" + SHA, layer)
        run_cli(["verify", f"{evil.host}/acme/capsule@{digest}", ...])

Builders follow ../shared/CAPSULE-SPEC.md section 2 (archive) and 5 (manifest).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Union

from . import BackgroundServer, QuietHandler

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CAPSULE_ARTIFACT_TYPE = "application/vnd.release-capsule.v1"
CAPSULE_LAYER_TYPE = "application/vnd.release-capsule.layer.v1.tar+gzip"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
LAYER_TITLE = "release-capsule.tar.gz"

GiB = 1 << 30
MiB = 1 << 20


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


assert sha256_digest(EMPTY_CONFIG) == EMPTY_CONFIG_DIGEST


# ---------------------------------------------------------------------------
# The fake registry
# ---------------------------------------------------------------------------

_ROUTE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


def _oci_error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


class _EvilHandler(QuietHandler):
    server_version = "rc-evil-registry"

    def _reply(self, status: int, body: bytes, content_type: str, headers=None) -> None:
        reg: EvilRegistry = self.server.owner
        reg._record(self.command, self.path, status)
        self.send_bytes(status, body, content_type, headers, head=self.command == "HEAD")

    def _read(self) -> None:
        reg: EvilRegistry = self.server.owner
        path = self.path.split("?", 1)[0]
        api = {"Docker-Distribution-API-Version": "registry/2.0"}

        def json_reply(status: int, body: bytes) -> None:
            self._reply(status, body, "application/json", api)

        if path in ("/v2", "/v2/"):
            return json_reply(200, b"{}")
        m = _TAGS.match(path)
        if m and self.command == "GET":
            tags = reg._tags(m["name"])
            if tags is None:
                return json_reply(404, _oci_error("NAME_UNKNOWN", "repository name not known"))
            return json_reply(200, json.dumps({"name": m["name"], "tags": tags}).encode())
        m = _ROUTE.match(path)
        if not m:
            return json_reply(404, _oci_error("NOT_FOUND", "no such route"))
        if m["kind"] == "manifests":
            entry = reg._lookup_manifest(m["name"], m["ref"])
            if entry is None:
                return json_reply(404, _oci_error("MANIFEST_UNKNOWN", "manifest unknown"))
            headers = {**api, "Docker-Content-Digest": entry.digest}
            return self._reply(200, entry.body, entry.media_type, headers)
        blob = reg._lookup_blob(m["ref"])
        if blob is None:
            return json_reply(404, _oci_error("BLOB_UNKNOWN", "blob unknown to registry"))
        headers = {**api, "Docker-Content-Digest": m["ref"]}
        return self._reply(200, blob, "application/octet-stream", headers)

    def _write(self) -> None:
        for _ in self.iter_body():
            pass
        self._reply(405, _oci_error("UNSUPPORTED", "the evil registry is read-only"), "application/json")

    do_GET = do_HEAD = _read
    do_POST = do_PUT = do_PATCH = do_DELETE = _write


@dataclass
class _Manifest:
    body: bytes
    media_type: str
    digest: str  # the digest we *claim* (header, lookup key); may be a lie


@dataclass
class EvilRequest:
    method: str
    path: str
    status: int


class EvilRegistry(BackgroundServer):
    """Serves registered manifests and blobs on 127.0.0.1:<random>, no auth.

    Routes: ``GET /v2/`` (200), ``GET|HEAD /v2/<name>/manifests/<tag|digest>``,
    ``GET|HEAD /v2/<name>/blobs/<digest>``, ``GET /v2/<name>/tags/list``.
    Blobs are global (any repository name serves them), as the tests never
    need per-repository blob scoping. Everything else is 404 (or 405 for
    writes: it is read-only). ``requests`` records (method, path, status).
    """

    handler_class = _EvilHandler

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.manifests: dict[tuple[str, str], _Manifest] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[EvilRequest] = []
        super().__init__()

    def add_blob(self, data: bytes) -> str:
        """Serve ``data`` under its true digest; returns the digest."""
        return self.add_blob_with_digest(data, sha256_digest(data))

    def add_blob_with_digest(self, data: bytes, digest: str) -> str:
        """Serve ``data`` under ``digest``, whether or not it matches."""
        with self._lock:
            self.blobs[digest] = data
        return digest

    def add_manifest(
        self, name: str, tag: str | None, manifest: bytes, *,
        media_type: str = OCI_MANIFEST, digest: str | None = None,
    ) -> str:
        """Serve ``manifest`` as ``name:tag`` and ``name@digest``; returns the digest.

        ``digest`` overrides the true digest (header and by-digest lookup), to
        test that clients hash what they receive.
        """
        digest = digest or sha256_digest(manifest)
        entry = _Manifest(manifest, media_type, digest)
        with self._lock:
            self.manifests[(name, digest)] = entry
            if tag is not None:
                self.manifests[(name, tag)] = entry
        return digest

    def add_capsule(
        self, name: str, tag: str | None, layer: bytes, *,
        annotations: Mapping[str, str] | None = None, **manifest_kwargs,
    ) -> str:
        """Register config blob, ``layer`` and a spec-shaped manifest; returns its digest."""
        self.add_blob(EMPTY_CONFIG)
        self.add_blob(layer)
        manifest = capsule_manifest(layer, annotations=annotations, **manifest_kwargs)
        return self.add_manifest(name, tag, manifest)

    def ref(self, name: str, tag_or_digest: str) -> str:
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{self.host}/{name}{sep}{tag_or_digest}"

    def _lookup_manifest(self, name: str, ref: str) -> _Manifest | None:
        with self._lock:
            return self.manifests.get((name, ref))

    def _lookup_blob(self, digest: str) -> bytes | None:
        with self._lock:
            return self.blobs.get(digest)

    def _tags(self, name: str) -> list[str] | None:
        with self._lock:
            refs = [r for (n, r) in self.manifests if n == name]
        if not refs:
            return None
        return sorted(r for r in refs if not r.startswith("sha256:"))

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append(EvilRequest(method, path, status))


# ---------------------------------------------------------------------------
# Capsule archive builders (CAPSULE-SPEC.md section 2)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Zeros:
    """A file body of ``size`` zero bytes, generated while writing (for bombs)."""

    size: int


class _ZeroReader:
    def __init__(self, size: int) -> None:
        self._left = size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        self._left -= n
        return bytes(n)


FileBody = Union[bytes, Zeros]


@dataclass
class RawEntry:
    """A tar member written verbatim, for entries no valid capsule contains.

    ``info`` is written as given (no normalization; its size is set from
    ``data``), ``data`` is the body of a regular file, else None.
    """

    info: tarfile.TarInfo
    data: FileBody | None = None


def _normalized(name: str, type_: bytes, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = size
    info.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _body_size(body: FileBody) -> int:
    return body.size if isinstance(body, Zeros) else len(body)


def _body_reader(body: FileBody):
    return _ZeroReader(body.size) if isinstance(body, Zeros) else io.BytesIO(body)


def _gzip_writer(out, level: int) -> gzip.GzipFile:
    # Spec: gzip header mtime 0, no file name, no comment.
    return gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=level, mtime=0)


def ordered_entries(files: Mapping[str, FileBody]) -> list[tuple[str, FileBody | None]]:
    """``[(path, body)]`` in capsule order; directories (body None) are added.

    Every parent directory comes before its contents and siblings are sorted
    byte-wise by name: sorting on the list of encoded path segments gives
    exactly that depth-first order (plain string order would put "a-b/x"
    before "a/x").
    """
    entries: dict[str, FileBody | None] = {}
    for path, body in files.items():
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if entries.get(parent) is not None:
                raise ValueError(f"{path}: parent {parent} is also a file")
            entries[parent] = None
        if path in entries and entries[path] is None:
            raise ValueError(f"{path} is both a file and a directory")
        entries[path] = body
    return sorted(entries.items(), key=lambda kv: [p.encode() for p in kv[0].split("/")])


def _write_entries(tar: tarfile.TarFile, files: Mapping[str, FileBody]) -> None:
    for path, body in ordered_entries(files):
        if body is None:
            tar.addfile(_normalized(path, tarfile.DIRTYPE))
        else:
            tar.addfile(_normalized(path, tarfile.REGTYPE, _body_size(body)), _body_reader(body))


def _write_raw(tar: tarfile.TarFile, raw: RawEntry) -> None:
    if raw.data is None:
        tar.addfile(raw.info)
    else:
        raw.info.size = _body_size(raw.data)
        tar.addfile(raw.info, _body_reader(raw.data))


def build_layer(
    files: Mapping[str, FileBody],
    *,
    extra: Iterable[RawEntry] = (),
    prepend: Iterable[RawEntry] = (),
    level: int = 9,
) -> bytes:
    """A gzip tar laid out like a valid capsule archive from ``{path: body}``.

    Section 2 layout: every parent directory has its own entry before its
    contents, siblings sorted byte-wise, headers normalized (0644/0755, uid/gid
    0, empty user/group names, mtime 0), GNU long names, gzip mtime 0 and no
    file name. ``prepend``/``extra`` entries are written verbatim before/after
    that: that is how the malicious variants are made. A body may be
    ``Zeros(n)``, generated while writing, so a 1 GiB file never sits in memory.

    Python's zlib output is not byte-identical to the Rust producer's, so never
    compare layer digests across the two; compare unpacked contents.
    """
    out = io.BytesIO()
    with _gzip_writer(out, level) as gz, tarfile.open(
        fileobj=gz, mode="w", format=tarfile.GNU_FORMAT
    ) as tar:
        for raw in prepend:
            _write_raw(tar, raw)
        _write_entries(tar, files)
        for raw in extra:
            _write_raw(tar, raw)
    return out.getvalue()


# -- a valid file set ---------------------------------------------------------

SAMPLE_SHA = "0123456789abcdef0123456789abcdef01234567"
SAMPLE_IMAGE_DIGEST = "sha256:" + "ab" * 32


def package_tree_digest(files: Mapping[str, bytes], package_path: str = "package/helm") -> str:
    """The section 3 package tree digest over the files under ``package_path``."""
    prefix = package_path.rstrip("/") + "/"
    rel = sorted(
        (p[len(prefix):].encode(), body) for p, body in files.items() if p.startswith(prefix)
    )
    text = b"".join(
        hashlib.sha256(body).hexdigest().encode() + b"  " + name + b"\n" for name, body in rel
    )
    return sha256_digest(text)


def release_yaml(fields: Mapping[str, object]) -> bytes:
    """Render release.yaml (section 3): nested mappings, every scalar double-quoted.

    Keys are written in the mapping's order; pass exactly what you want (use
    ``release_fields()`` for the spec's, then edit).
    """
    lines: list[str] = []

    def emit(mapping: Mapping[str, object], indent: int) -> None:
        for key, value in mapping.items():
            if isinstance(value, Mapping):
                lines.append(" " * indent + f"{key}:")
                emit(value, indent + 2)
            else:
                lines.append(" " * indent + f"{key}: {json.dumps(str(value))}")

    emit(fields, 0)
    return ("\n".join(lines) + "\n").encode()


def release_fields(
    *,
    sha: str = SAMPLE_SHA,
    owner: str = "acme",
    repo: str = "shop",
    image_repo: str = "ghcr.io/acme/shop",
    image_digest: str = SAMPLE_IMAGE_DIGEST,
    capsule_repo: str = "ghcr.io/acme/shop-release-capsule",
    created: str = "2026-11-20T10:11:12Z",
    package_digest: str = "sha256:" + "0" * 64,
    chart_name: str = "demo",
    chart_version: str = "0.1.0",
    app_version: str | None = "1.16.0",
) -> dict:
    """The release.yaml fields of section 3, in the spec's key order (helm kind)."""
    chart = {"name": chart_name, "version": chart_version}
    if app_version is not None:
        chart["appVersion"] = app_version
    return {
        "schemaVersion": "release-capsule/v1",
        "gitCommit": sha,
        "created": created,
        "source": {"repoURL": f"https://github.com/{owner}/{repo}"},
        "image": {"repoURL": image_repo, "tag": f"git-{sha}", "digest": image_digest},
        "capsule": {"repoURL": capsule_repo, "tag": f"git-{sha}"},
        "package": {
            "kind": "helm",
            "path": "package/helm",
            "digest": package_digest,
            "chart": chart,
        },
        "metadata": {
            "sbomPath": "metadata/sbom.json",
            "provenancePath": "metadata/provenance.json",
        },
    }


def sample_capsule_files(
    *, release_overrides: Mapping[str, object] | None = None, **release_kwargs
) -> dict[str, bytes]:
    """A complete, consistent capsule file set (tiny helm chart, metadata).

    The package digest in release.yaml is computed from the files. The SBOM and
    provenance are minimal JSON, not full SPDX/in-toto documents: enough for
    ``verify`` (section 8 only asks that they parse). ``release_overrides`` maps
    dotted keys to new values (``{"image.tag": "git-bad"}``); a value of None
    deletes the key.
    """
    files: dict[str, bytes] = {
        "package/helm/Chart.yaml": (
            b"apiVersion: v2\nname: demo\ndescription: test chart\n"
            b"type: application\nversion: 0.1.0\nappVersion: \"1.16.0\"\n"
        ),
        "package/helm/values.yaml": b"replicaCount: 1\n",
        "package/helm/templates/configmap.yaml": (
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
            b"data:\n  replicas: \"{{ .Values.replicaCount }}\"\n"
        ),
        "metadata/sbom.json": b'{"spdxVersion":"SPDX-2.3"}\n',
        "metadata/provenance.json": b'{"_type":"https://in-toto.io/Statement/v1"}\n',
    }
    fields = release_fields(package_digest=package_tree_digest(files), **release_kwargs)
    for dotted, value in (release_overrides or {}).items():
        *parents, last = dotted.split(".")
        node = fields
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    files["release.yaml"] = release_yaml(fields)
    return files


# -- malicious variants --------------------------------------------------------

def _raw(name: str, type_: bytes, *, linkname: str = "", data: bytes | None = None,
         devmajor: int = 0, devminor: int = 0) -> RawEntry:
    info = _normalized(name, type_)
    info.linkname = linkname
    info.devmajor, info.devminor = devmajor, devminor
    return RawEntry(info, data)


EVIL_KINDS = (
    "dotdot", "dotdot-leading", "absolute", "dot-slash", "backslash", "symlink",
    "symlink-relative-escape", "symlink-then-write", "hardlink", "hardlink-internal",
    "chardev", "blockdev", "fifo",
)


def evil_entries(kind: str, *, outside: str = "/tmp/release-capsule-escape") -> list[RawEntry]:
    """The entry (or two) of ``kind`` that section 2 forbids.

    ``outside`` is an absolute directory where a vulnerable unpacker would
    write ("absolute", "symlink-then-write"); pass a path under the test's
    tmp dir and assert nothing appears there. The ".." kinds escape to the
    parent(s) of the output directory, so unpack into a nested directory and
    check its ancestors. A correct unpacker refuses every kind.
    """
    outside = outside.rstrip("/")
    reg, sym, lnk = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    kinds = {
        "dotdot": [_raw("package/helm/../../../escaped.txt", reg, data=b"escaped\n")],
        "dotdot-leading": [_raw("../escaped.txt", reg, data=b"escaped\n")],
        "absolute": [_raw(f"{outside}/absolute.txt", reg, data=b"abs\n")],
        "dot-slash": [_raw("./package/helm/extra.txt", reg, data=b"x\n")],
        "backslash": [_raw("package\\helm\\win.txt", reg, data=b"x\n")],
        "symlink": [_raw("package/helm/passwd", sym, linkname="/etc/passwd")],
        "symlink-relative-escape": [_raw("package/helm/up", sym, linkname="../../../outside")],
        # The classic: a link to a directory outside, then a file "inside" it.
        "symlink-then-write": [
            _raw("package/helm/link", sym, linkname=outside),
            _raw("package/helm/link/pwned.txt", reg, data=b"pwned\n"),
        ],
        "hardlink": [_raw("package/helm/hard", lnk, linkname="/etc/passwd")],
        # Even a link to a member of the archive is not a regular file entry.
        "hardlink-internal": [_raw("package/helm/hard", lnk, linkname="release.yaml")],
        "chardev": [_raw("package/helm/null", tarfile.CHRTYPE, devmajor=1, devminor=3)],
        "blockdev": [_raw("package/helm/disk", tarfile.BLKTYPE, devmajor=8, devminor=0)],
        "fifo": [_raw("package/helm/fifo", tarfile.FIFOTYPE)],
    }
    assert set(kinds) == set(EVIL_KINDS)
    return kinds[kind]


def evil_layer(
    kind: str, files: Mapping[str, FileBody] | None = None, *,
    outside: str = "/tmp/release-capsule-escape",
) -> bytes:
    """A valid capsule (``sample_capsule_files()`` unless ``files``) with the
    forbidden entries of ``kind`` (see ``EVIL_KINDS``) appended at the end."""
    base = files if files is not None else sample_capsule_files()
    return build_layer(base, extra=evil_entries(kind, outside=outside))


def gzip_bomb_layer(
    size: int = GiB, path: str = "package/helm/templates/bomb.yaml",
    files: Mapping[str, FileBody] | None = None,
) -> bytes:
    """A valid-looking capsule with one extra file of ``size`` zero bytes.

    Built streaming (the zeros are never in memory); 1 GiB compresses to about
    1 MiB, well under the 100 MiB compressed limit, so only an unpacker that
    counts bytes while unpacking catches it. Takes a few seconds of CPU: cache
    it (the ``gzip_bomb`` fixture does) if several tests need it.
    """
    all_files = dict(files if files is not None else sample_capsule_files())
    all_files[path] = Zeros(size)
    return build_layer(all_files)


def lying_size_layer(
    *, claimed: int, actual: int, path: str = "package/helm/templates/liar.yaml",
    files: Mapping[str, FileBody] | None = None,
) -> bytes:
    """A capsule whose last member's header size field lies.

    The valid entries come first; then a regular-file header claiming
    ``claimed`` bytes, then ``actual`` bytes of data padded to 512, then the
    two end-of-archive blocks. ``claimed > actual``: the archive ends inside
    the member. ``claimed < actual``: the surplus is read as the next header,
    which is garbage (bad checksum). Raw bytes, because tarfile refuses to
    write a member whose body disagrees with its header.
    """
    plain = io.BytesIO()
    tar = tarfile.open(fileobj=plain, mode="w", format=tarfile.GNU_FORMAT)
    _write_entries(tar, files if files is not None else sample_capsule_files())
    # Everything up to tar.offset is whole members; what close() would add is
    # end-of-archive padding, which must come after our forged member instead.
    valid = plain.getvalue()[: tar.offset]
    header = _normalized(path, tarfile.REGTYPE, claimed).tobuf(tarfile.GNU_FORMAT)
    payload = b"L" * actual + b"\0" * ((-actual) % 512)
    out = io.BytesIO()
    with _gzip_writer(out, 9) as gz:
        gz.write(valid + header + payload + b"\0" * 1024)
    return out.getvalue()


# ---------------------------------------------------------------------------
# Manifests and OCI layouts (sections 5 and 6)
# ---------------------------------------------------------------------------

def capsule_manifest(
    layer: bytes,
    *,
    annotations: Mapping[str, str] | None = None,
    artifact_type: str = CAPSULE_ARTIFACT_TYPE,
    layer_media_type: str = CAPSULE_LAYER_TYPE,
    layer_digest: str | None = None,
    layer_size: int | None = None,
    extra_layers: Iterable[dict] = (),
) -> bytes:
    """The compact section 5 manifest for ``layer``.

    Key order follows the spec; annotations are sorted by key and omitted
    when None. The keyword overrides exist to make wrong manifests.
    """
    manifest: dict = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG_TYPE, "digest": EMPTY_CONFIG_DIGEST, "size": 2},
        "layers": [
            {
                "mediaType": layer_media_type,
                "digest": layer_digest or sha256_digest(layer),
                "size": len(layer) if layer_size is None else layer_size,
                "annotations": {"org.opencontainers.image.title": LAYER_TITLE},
            },
            *extra_layers,
        ],
    }
    if annotations is not None:
        manifest["annotations"] = dict(sorted(annotations.items()))
    return json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()


def capsule_annotations(
    *, sha: str = SAMPLE_SHA, owner: str = "acme", repo: str = "shop",
    image_repo: str = "ghcr.io/acme/shop", image_digest: str = SAMPLE_IMAGE_DIGEST,
    created: str = "2026-11-20T10:11:12Z", package_kind: str = "helm",
    package_digest: str = "sha256:" + "0" * 64,
) -> dict[str, str]:
    """The manifest annotations of section 5 (sorted when serialized)."""
    return {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": sha,
        "org.opencontainers.image.source": f"https://github.com/{owner}/{repo}",
        "vnd.release-capsule.image": f"{image_repo}@{image_digest}",
        "vnd.release-capsule.package.kind": package_kind,
        "vnd.release-capsule.package.digest": package_digest,
    }


def write_oci_layout(
    directory: str | Path, manifest: bytes, blobs: Iterable[bytes], ref_name: str,
    media_type: str = OCI_MANIFEST,
) -> str:
    """Write an OCI image layout (section 6) holding one manifest; returns its digest.

    ``skopeo copy oci:DIR:<ref_name> docker://...`` publishes it.
    """
    root = Path(directory)
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for blob in [*blobs, manifest]:
        (blob_dir / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    digest = sha256_digest(manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": media_type,
            "digest": digest,
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    }
    (root / "index.json").write_text(json.dumps(index))
    return digest
