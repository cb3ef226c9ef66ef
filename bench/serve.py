#!/usr/bin/env python3
"""Load on `release-capsule serve`: a report, not a test.

    cargo build --release
    .venv/bin/python bench/serve.py [--bin target/release/release-capsule] [--connections 200] [--seconds 10]

Everything runs on this machine, against one local docker-registry, under the same
load tool (wrk, Debian's) in the same run, so only the ratios mean something:

- the floor: the registry answering the two tag look-ups a verification makes
  (the capsule tag and the image tag; GET under wrk, see tag_lookup_script). A
  cached verification does those two requests and nothing else, so it cannot
  beat half that rate;
- cached verifications: the Kustomize stage's request, over and over;
- cold verifications: the same with --cache-entries 0, so every request fetches,
  hashes and unpacks the capsule again;
- today's service: a stdlib Python http.server that only compares the strings
  it is sent (what code-dot-org runs now). It does none of the work; context only;
- the `verify` CLI on the same capsule, one process per verification: what a cold
  verification should not cost more than.

Peak RSS is the service's VmHWM after all its load, against the memory limit the
Deployment in deploy/kubernetes sets.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

from harness import free_port  # noqa: E402
from harness.registry import Registry  # noqa: E402

from kargo_http import HttpStep  # noqa: E402
from verify_support import CREATED, SHA, SOURCE, TAG, app_image_layout, skopeo_push  # noqa: E402

MEMORY_LIMIT_MIB = 256  # deploy/kubernetes/deployment.yaml

STDLIB_VERIFIER = r'''
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        image, capsule, release = body["image"], body["capsule"], body.get("release") or {}
        ok = (release.get("imageRepo") == image["repoURL"] and release.get("imageTag") == image["tag"]
              and release.get("imageDigest") == image["digest"] and capsule["tag"] == image["tag"]
              and "git-" + release.get("gitCommit", "") == image["tag"])
        out = json.dumps({"ok": ok, "reason": "" if ok else "mismatch", "release": {
            "gitCommit": release.get("gitCommit", ""), "packageKind": release.get("packageKind", ""),
            "packagePath": release.get("packagePath", "")}}).encode()
        self.send_response(200 if ok else 422)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

class S(ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, *a): pass  # wrk cutting connections at the end is not news

S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def wrk(url: str, script: str, connections: int, seconds: int, work: Path) -> dict:
    lua = work / f"wrk-{time.monotonic_ns()}.lua"
    lua.write_text(script)
    threads = min(2, connections)  # wrk needs a connection per thread
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": pct(50), "p99": pct(99), "non2xx": int(bad.group(1)) if bad else 0,
            "errors": errors.group(1) if errors else ""}


def sequential(url: str, body: bytes, count: int) -> dict:
    """One client, one request at a time on one kept-alive connection: what a
    Kargo controller sends. Measured here rather than with `wrk -c1`, whose
    single-connection latencies on this machine came out twice these."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("POST", "/verify", body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
        times.append((time.perf_counter() - start) * 1000)
    conn.close()
    times.sort()
    return {"rps": 1000 / statistics.mean(times), "p50": statistics.median(times),
            "p99": times[min(len(times) - 1, int(len(times) * 0.99))], "non2xx": 0, "errors": ""}


def post_script(body: bytes) -> str:
    return (f"wrk.method = 'POST'\nwrk.body = {json.dumps(body.decode())}\n"
            "wrk.headers['Content-Type'] = 'application/json'\n")


def tag_lookup_script(paths: list[str]) -> str:
    """GET, not HEAD: wrk waits for a body after a HEAD answer with a
    Content-Length, so HEAD cannot be measured with it. A GET of a small
    manifest costs the registry a little more than a HEAD, which lowers the
    floor a little, in the service's favour; docs/performance.md says so."""
    items = ", ".join(json.dumps(p) for p in paths)
    return (f"local paths = {{{items}}}\nlocal i = 0\n"
            "request = function()\n  i = i + 1\n"
            "  return wrk.format('GET', paths[(i % #paths) + 1], {['Accept'] = 'application/vnd.oci.image.manifest.v1+json'})\nend\n")


def wait_http(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def start_serve(binary: Path, allow: str, env: dict, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(binary), "serve", "--listen", f"127.0.0.1:{port}", "--allow", allow, *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc, f"http://127.0.0.1:{port}"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def row(name: str, r: dict, note: str = "") -> str:
    return f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | {note} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "release-capsule"))
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--cli-runs", type=int, default=20)
    args = ap.parse_args()
    binary = Path(args.bin)
    assert shutil.which("wrk"), "wrk is needed (apt-get install wrk)"
    with tempfile.TemporaryDirectory() as tmp, Registry(access_log=False) as registry:
        work = Path(tmp)
        env = {"PATH": os.environ["PATH"], "HOME": tmp, "TMPDIR": tmp, "DOCKER_CONFIG": tmp}
        image, capsule = f"{registry.host}/bench/app", f"{registry.host}/bench/app-release-capsule"
        image_digest = app_image_layout(work / "image", TAG)
        skopeo_push("skopeo", work / "image", TAG, f"{image}:{TAG}")
        kustomize = work / "kustomize"
        (kustomize / "base").mkdir(parents=True)
        (kustomize / "kustomization.yaml").write_text("resources:\n  - base\n")
        (kustomize / "base" / "kustomization.yaml").write_text("resources:\n  - deployment.yaml\n")
        for i in range(40):
            (kustomize / "base" / f"file-{i:02}.yaml").write_text(f"# {i}\n" + "x: y\n" * 200)
        (kustomize / "base" / "deployment.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n")
        subprocess.run([str(binary), "build", "--sha", SHA, "--image", image, "--image-digest", image_digest,
                        "--source-repository", SOURCE, "--package-kind", "kustomize", "--package-path", str(kustomize),
                        "--created", CREATED, "--output", str(work / "capsule")], check=True, capture_output=True, env=env)
        skopeo_push("skopeo", work / "capsule", TAG, f"{capsule}:{TAG}")

        step = HttpStep.load()
        step = HttpStep(step.config, {**step.vars, "imageRepo": image, "capsuleRepo": capsule})
        parsed = {"gitCommit": SHA, "imageRepo": image, "imageTag": TAG, "imageDigest": image_digest,
                  "packageKind": "kustomize", "packagePath": "package/kustomize"}
        body = step.body({image: {"RepoURL": image, "Tag": TAG, "Digest": image_digest}}, {"capsule-release": parsed})
        c, s = args.connections, args.seconds
        results = {}

        results["floor"] = wrk(registry.url, tag_lookup_script([f"/v2/bench/app-release-capsule/manifests/{TAG}", f"/v2/bench/app/manifests/{TAG}"]), c, s, work)

        proc, url = start_serve(binary, f"{registry.host}/bench/*", env)
        results["cached"] = wrk(f"{url}/verify", post_script(body), c, s, work)
        cached_rss = peak_rss_mib(proc.pid)
        proc.terminate()
        proc.wait()

        proc, url = start_serve(binary, f"{registry.host}/bench/*", env, "--cache-entries", "0")
        results["cold"] = wrk(f"{url}/verify", post_script(body), c, s, work)
        results["cold-1"] = sequential(url, body, args.cli_runs * 5)
        cold_rss = peak_rss_mib(proc.pid)
        proc.terminate()
        proc.wait()

        port = free_port()
        stdlib = subprocess.Popen([sys.executable, "-c", STDLIB_VERIFIER, str(port)])
        time.sleep(0.3)
        results["stdlib"] = wrk(f"http://127.0.0.1:{port}/verify", post_script(body), c, s, work)
        stdlib.terminate()

        cli = []
        for _ in range(args.cli_runs):
            start = time.perf_counter()
            subprocess.run([str(binary), "verify", "--capsule", f"{capsule}:{TAG}", "--image", f"{image}:{TAG}",
                            "--image-digest", image_digest], check=True, capture_output=True, env=env)
            cli.append((time.perf_counter() - start) * 1000)

    floor_verifications = results["floor"]["rps"] / 2
    print(f"\n{c} connections, {s} s each, 2 wrk threads; 2 cores shared by wrk, the registry and the service.\n")
    print("| Load | requests/s | p50 | p99 | |")
    print("| --- | --- | --- | --- | --- |")
    print(row("floor: the registry, 2 tag look-ups per verification", results["floor"], f"{floor_verifications:.0f} verifications/s at most"))
    print(row("serve, cached", results["cached"], f"{results['cached']['rps'] / floor_verifications:.0%} of the floor; peak RSS {cached_rss:.1f} MiB"))
    print(row("serve, cold (no cache)", results["cold"], f"peak RSS {cold_rss:.1f} MiB"))
    print(row("serve, cold, one client, one request at a time", results["cold-1"], f"{args.cli_runs * 5} requests"))
    print(row("today's stdlib Python service (compares strings only)", results["stdlib"], "does none of the work"))
    print(f"| `verify` CLI, one process per verification | {1000 / statistics.median(cli):.0f} | {statistics.median(cli):.2f} ms | "
          f"{max(cli):.2f} ms (max of {len(cli)}) | cold one-client p50 is {results['cold-1']['p50'] / statistics.median(cli):.2f}x this |")
    for name, r in results.items():
        if r["non2xx"] or r["errors"]:
            print(f"note: {name}: {r['non2xx']} non-2xx answers, socket errors: {r['errors'] or 'none'}")
    print(f"\nPeak RSS {max(cached_rss, cold_rss):.1f} MiB against the Deployment's {MEMORY_LIMIT_MIB} MiB limit.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
