"""Fixtures for release-capsule's Python integration tests.

Run with ``.venv/bin/python -m pytest tests/py`` after ``scripts/bootstrap``.
The servers (registry, fakes, proxy) only ever bind 127.0.0.1, and ``run_cli``
hands the binary a scrubbed environment, so a CI runner's real GITHUB_TOKEN,
proxy settings or docker credentials can never reach it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import REPO_ROOT
from harness.evil_registry import EvilRegistry, gzip_bomb_layer
from harness.fake_github import FakeGitHub
from harness.fault_proxy import FaultProxy
from harness.registry import Registry
from serve_support import Server
from verify_support import TAG as RELEASE_TAG, World

# A test that hangs (a client retrying forever, a server that never answers)
# fails after this many seconds, when pytest-timeout is installed.
DEFAULT_TEST_TIMEOUT = 300

# The only parent variables the binary inherits; everything else (GITHUB_*,
# INPUT_*, SOURCE_DATE_EPOCH, HTTP(S)_PROXY, DOCKER_CONFIG...) must come from
# the test, so results do not depend on the machine or CI runner.
_INHERITED_ENV = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "RUST_BACKTRACE", "RUST_LOG",
    "LLVM_PROFILE_FILE", "SSL_CERT_FILE", "SSL_CERT_DIR",
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "exclusive(name): one test at a time among those marked with the same name, across all "
        "pytest-xdist workers (for a machine-wide resource that cannot be shared)",
    )


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A directory of this run that every pytest-xdist worker sees."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@pytest.fixture(autouse=True)
def _exclusive(request) -> Iterator[None]:
    """Holds the ``exclusive`` marker's lock for the test, its function-scoped
    fixtures included. scripts/test runs the modules on several workers; a
    test that needs something of the machine's to itself says so with
    ``@pytest.mark.exclusive("podman")`` (or ``pytestmark`` for a module)."""
    marker = request.node.get_closest_marker("exclusive")
    if marker is None:
        yield
        return
    with open(request.getfixturevalue("run_dir") / f"exclusive-{marker.args[0]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT))


# -- paths -------------------------------------------------------------------

@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir(repo_root: Path) -> Path:
    """``../shared`` beside the checkout (spec, GitHub schemas, event payloads)."""
    path = repo_root.parent / "shared"
    if not (path / "github-api" / "operations.json").is_file():
        pytest.skip(
            f"shared material not found at {path} (expected ../shared beside the "
            "checkout, with github-api/operations.json); see docs/development.md"
        )
    return path


@pytest.fixture(scope="session")
def bin_path(repo_root: Path) -> Path:
    """The release-capsule binary: $RELEASE_CAPSULE_BIN, else target/debug."""
    env = os.environ.get("RELEASE_CAPSULE_BIN")
    path = Path(env) if env else repo_root / "target" / "debug" / "release-capsule"
    if not (path.is_file() and os.access(path, os.X_OK)):
        how = "RELEASE_CAPSULE_BIN points at" if env else "expected the debug build at"
        pytest.fail(
            f"release-capsule binary missing: {how} {path}. Build it with "
            "`cargo build` or set RELEASE_CAPSULE_BIN.",
            pytrace=False,
        )
    return path


# -- servers -----------------------------------------------------------------

@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """A real docker-registry without auth, shared by the session.

    Shared, so use a repository name of your own (the ``repo_name`` fixture).
    """
    with Registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[Registry]:
    """A real docker-registry with htpasswd (bcrypt) basic auth.

    Credentials: ``auth_registry.username`` / ``auth_registry.password``.
    """
    with Registry(auth=True) as reg:
        yield reg


@pytest.fixture
def repo_name(request) -> str:
    """A repository name unique to this test, e.g. ``test/test-publish-ab12cd``."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    return f"test/{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: ``fault_proxy(upstream, **options) -> FaultProxy``.

    ``upstream`` is a Registry (or anything with ``.host``) or "127.0.0.1:PORT";
    options are FaultProxy's (fault_rate, drop_rate, seed, always_fail,
    should_fault, max_faults...). Every proxy made is closed after the test.
    """
    made: list[FaultProxy] = []

    def make(upstream, **options) -> FaultProxy:
        proxy = FaultProxy(getattr(upstream, "host", upstream), **options)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture
def evil_registry() -> Iterator[EvilRegistry]:
    with EvilRegistry() as evil:
        yield evil


@pytest.fixture
def fake_github(shared_dir: Path) -> Iterator[FakeGitHub]:
    """A fresh fake GitHub API; set ``GITHUB_API_URL=fake_github.url``."""
    with FakeGitHub(operations_path=shared_dir / "github-api" / "operations.json") as fake:
        yield fake


@pytest.fixture(scope="session")
def gzip_bomb(run_dir: Path) -> bytes:
    """A capsule layer with a 1 GiB file of zeros (about 1 MiB gzipped), built
    once per run: under pytest-xdist the first worker that needs it builds it
    into the run's shared temporary directory and the others read it there."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return gzip_bomb_layer()
    path = run_dir / "gzip-bomb.tar.gz"
    with open(run_dir / "gzip-bomb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            path.with_suffix(".partial").write_bytes(gzip_bomb_layer())
            path.with_suffix(".partial").rename(path)
    return path.read_bytes()


@pytest.fixture
def world(registry, repo_name, skopeo, run_cli, repo_root, tmp_path) -> World:
    image = f"{registry.host}/{repo_name}"
    w = World(registry, skopeo, run_cli, repo_root / "examples/charts/hello", tmp_path, image, f"{image}-release-capsule", "")
    w.image_digest = w.push_image_tag(RELEASE_TAG)
    return w


@pytest.fixture
def serve(bin_path, cli_env):
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None, preexec_fn=None) -> Server:
        s = Server(bin_path, *args, env={**cli_env, **(env or {})}, preexec_fn=preexec_fn)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


# -- inputs ------------------------------------------------------------------

@pytest.fixture
def helm_chart_factory(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``helm_chart_factory(name="demo", parent=None) -> chart dir``.

    Scaffolds Helm's real starter chart (``helm create``) with the Helm v4 SDK.
    """
    import helm_python

    def make(name: str = "demo", parent: Path | None = None) -> Path:
        parent = Path(parent) if parent is not None else tmp_path / "charts-src"
        parent.mkdir(parents=True, exist_ok=True)
        with helm_python.Chart.create(name, parent):
            pass  # release the native handle; the files are what we want
        return parent / name

    return make


@pytest.fixture
def helm_chart(helm_chart_factory) -> Path:
    """A fresh ``helm create demo`` chart directory (name demo, version 0.1.0)."""
    return helm_chart_factory("demo")


# -- running the binary ----------------------------------------------------------

@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The base environment ``run_cli`` uses (edit it to change every call)."""
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
    env.update({
        "HOME": str(home),  # no ~/.docker/config.json credentials from the host
        "DOCKER_CONFIG": str(home / ".docker"),
        "TMPDIR": str(tmp_path),
        "NO_COLOR": "1",
        "RUST_BACKTRACE": env.get("RUST_BACKTRACE", "1"),
    })
    return env


@pytest.fixture
def run_cli(bin_path: Path, cli_env: dict[str, str], tmp_path: Path):
    """``run_cli(*args, env=None, timeout=120, cwd=None, input=None)``.

    Runs the binary with ``cli_env`` plus ``env`` (a value of None removes a
    variable) and returns the CompletedProcess (text, stdout/stderr captured).
    It does not check the exit code: assert on ``.returncode`` yourself.
    """

    def run(*args, env: dict[str, str | None] | None = None, timeout: float = 120,
            cwd: str | Path | None = None, input: str | None = None):
        argv = [str(a) for a in (args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args)]
        full_env = dict(cli_env)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = str(v)
        return subprocess.run(
            [str(bin_path), *argv],
            env=full_env,
            cwd=str(cwd or tmp_path),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def github_actions_env(tmp_path: Path, shared_dir: Path, fake_github: FakeGitHub) -> dict[str, str]:
    """GitHub Actions variables for a push event, wired to ``fake_github``.

    Pass as ``run_cli(..., env=github_actions_env)``; GITHUB_OUTPUT and
    GITHUB_STEP_SUMMARY are empty files under tmp_path to read afterwards.
    """
    event_path = shared_dir / "github-api" / "events" / "push.json"
    event = json.loads(event_path.read_text())
    out = tmp_path / "github"
    out.mkdir(exist_ok=True)
    for name in ("output", "step_summary", "env"):
        (out / name).touch()
    return {
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_API_URL": fake_github.url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_TOKEN": "ghs_faketoken0123456789",
        "GITHUB_REPOSITORY": event["repository"]["full_name"],
        "GITHUB_REPOSITORY_OWNER": event["repository"]["owner"]["login"],
        "GITHUB_SHA": event["after"],
        "GITHUB_REF": event["ref"],
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_RUN_ID": "1234567890",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_WORKFLOW": "release",
        "GITHUB_JOB": "capsule",
        "GITHUB_ACTOR": event["sender"]["login"],
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_OUTPUT": str(out / "output"),
        "GITHUB_STEP_SUMMARY": str(out / "step_summary"),
        "GITHUB_ENV": str(out / "env"),
        "RUNNER_TEMP": str(tmp_path),
    }


@pytest.fixture(scope="session")
def skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.skip("skopeo not installed; run scripts/bootstrap")
    return path


# -- the action image under podman (test_container.py, test_image.py) ----------------

@pytest.fixture(scope="session")
def podman():
    """podman and buildah with the settings these machines need (harness/container.py)."""
    from harness.container import Podman
    from runner_support import unavailable

    p = Podman()
    problem = p.problem()
    if problem:
        unavailable(problem)
    return p


@pytest.fixture(scope="session")
def action_image(podman, bin_path: Path) -> Iterator[str]:
    """scripts/image --binary <the test binary> TAG, once per session (under
    pytest-xdist, once per worker that runs an image test: about 5 s each): the
    tag (removed afterwards) of the Dockerfile's final stage around the test binary."""
    from runner_support import is_static, unavailable

    if not is_static(bin_path):
        unavailable(f"{bin_path} is dynamically linked and the image has no loader; build it as scripts/test "
                    "does (-C target-feature=+crt-static)")
    problem = podman.cannot_run(bin_path)
    if problem:
        unavailable(problem)
    # From here on, whatever goes wrong is the image's fault, and fails the tests.
    tag = f"localhost/release-capsule-test:{uuid.uuid4().hex[:8]}"
    podman.build(tag, bin_path)
    try:
        yield tag
    finally:
        podman.remove_image(tag)
