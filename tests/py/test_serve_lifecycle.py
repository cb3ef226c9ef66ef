"""`serve` as Kubernetes runs it (spec section 10): the stop on SIGTERM (readyz
503 at once, /verify still served for the drain period, then the listener
closes and what is in flight finishes, within a bound, exit 0), and the log,
one JSON object per line on stdout. Real processes, real signals."""

from __future__ import annotations

import json
import signal
import threading
import time

from serve_support import allow, behind, stage_body


def events(server) -> list[str]:
    return [l["event"] for l in server.logs() if "event" in l]


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_sigterm_takes_the_pod_out_first_then_closes_and_finishes_what_is_in_flight(world, serve, fault_proxy):
    # Blob downloads are slow, so a verification started late in the drain is still running when the listener closes.
    proxy = fault_proxy(world.registry, delay=2.0, delay_when=lambda m, p: m == "GET" and "/blobs/" in p)
    view = behind(proxy, world)
    view.publish()
    s = serve("--allow", f"{proxy.host}/test/*", "--drain-seconds", "2")
    body = stage_body(view)
    assert s.get("/readyz")[0] == 200

    s.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: s.get("/readyz")[0] == 503, 1.5, "readyz turns 503 at once")
    # Still served: a slow one (its blobs take 2 s), and quick ones until the listener closes.
    slow: list = []
    in_flight = threading.Thread(target=lambda: slow.append(s.verify(body)))
    in_flight.start()
    wait_for(lambda: any("/blobs/" in e.path for e in proxy.log), 5, "the slow verification is fetching")
    quick = []
    while True:
        try:
            quick.append(s.get("/healthz")[0])
        except OSError:
            break  # the listener closed
        time.sleep(0.05)
    assert quick and set(quick) == {200}, quick
    in_flight.join(timeout=60)
    assert slow and slow[0][0] == 200, slow
    assert s.proc.wait(timeout=30) == 0
    assert events(s) == ["listening", "draining", "closing", "stopped"], s.logs()
    verified = [l for l in s.logs() if l.get("path") == "/verify"]
    assert [l["status"] for l in verified] == [200], "the request in flight at the close was answered"


def test_sigterm_keeps_answering_verify_during_the_drain(world, serve):
    world.publish()
    s = serve(*allow(world), "--drain-seconds", "2")
    body = stage_body(world)
    assert s.verify(body)[0] == 200
    s.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: s.get("/readyz")[0] == 503, 1.5, "readyz turns 503 at once")
    answered = []
    while True:
        try:
            answered.append(s.verify(body)[0])
        except OSError:
            break
    assert len(answered) >= 2 and set(answered) == {200}, answered
    assert s.proc.wait(timeout=30) == 0


def test_requests_in_flight_are_cut_off_at_the_grace_bound_and_the_exit_is_still_0(world, serve, fault_proxy):
    proxy = fault_proxy(world.registry, delay=30.0, delay_when=lambda m, p: m == "GET" and "/blobs/" in p)
    view = behind(proxy, world)
    view.publish()
    s = serve("--allow", f"{proxy.host}/test/*", "--drain-seconds", "1", "--shutdown-grace-seconds", "3")
    stuck: list = []
    t = threading.Thread(target=lambda: stuck.append(_try(lambda: s.verify(stage_body(view)))))
    t.start()
    wait_for(lambda: any("/blobs/" in e.path for e in proxy.log), 10, "the verification is fetching")
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=20) == 0
    t.join(timeout=20)
    assert stuck and isinstance(stuck[0], OSError), stuck
    assert events(s)[-1] == "exit", s.logs()


def _try(call):
    try:
        return call()
    except OSError as e:
        return e


def test_a_drain_as_long_as_the_grace_period_is_refused_at_start(bin_path, cli_env):
    import subprocess
    proc = subprocess.run([str(bin_path), "serve", "--allow", "ghcr.io/a/*", "--drain-seconds", "25"],
                          env=cli_env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "--drain-seconds 25 must be shorter than --shutdown-grace-seconds 25" in proc.stderr, proc.stderr


def test_the_log_is_json_lines_on_stdout_and_nothing_on_stderr(world, serve, tmp_path):
    world.publish()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {}, "credsStore": "desktop"}))
    s = serve(*allow(world), "--registry-config", str(config), "--drain-seconds", "1")
    assert s.verify(stage_body(world))[0] == 200
    assert s.verify(b"{}")[0] == 400
    assert s.stop(signal.SIGTERM) == 0
    assert s.stderr == ""
    lines = [json.loads(l) for l in s.lines]  # every line parses
    assert events(s) == ["warning", "listening", "draining", "closing", "stopped"], lines
    warning = lines[0]
    assert "credsStore desktop is a credential helper" in warning["message"] and warning["time"], warning
    requests = [l for l in lines if l.get("path") == "/verify"]
    assert [(l["status"], l["outcome"]) for l in requests] == [(200, "verified"), (400, "malformed")], requests


def test_the_shipped_deployment_starts_and_stops_within_its_pods_grace_period(serve, tmp_path, repo_root):
    import yaml
    doc = yaml.safe_load((repo_root / "deploy/kubernetes/deployment.yaml").read_text())
    pod = doc["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in args[1:])
    assert int(flags["drain-seconds"]) < int(flags["shutdown-grace-seconds"]) < pod["terminationGracePeriodSeconds"], flags
    # Each verification may hold 400 MiB in /tmp (two layers of 100 MiB and their trees): more is an eviction, not ENOSPC.
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    size_limit = {"Mi": 1 << 20, "Gi": 1 << 30}[tmp["emptyDir"]["sizeLimit"][-2:]] * int(tmp["emptyDir"]["sizeLimit"][:-2])
    assert size_limit >= int(flags["max-concurrent"]) * 400 * (1 << 20), tmp
    config = tmp_path / ".dockerconfigjson"
    config.write_text('{"auths": {}}')
    local = [a for a in args[1:] if not a.startswith(("--listen=", "--registry-config="))]
    s = serve(*local, f"--registry-config={config}")
    wait_for(lambda: any(l.get("event") == "listening" for l in s.logs()), 5, "it logs its start")
    listening = next(l for l in s.logs() if l.get("event") == "listening")
    assert listening["drainSeconds"] == int(flags["drain-seconds"]) and listening["allow"] == ["ghcr.io/code-dot-org/*"], listening


def test_clients_holding_half_sent_heads_do_not_hold_up_the_stop_or_cut_off_what_is_in_flight(world, serve, fault_proxy):
    # A connection that never finished its first request head used to be kept
    # open through the stop until the 30 s head timeout, past the grace bound
    # (25 s by default): the exit then came from the grace bound, as if a
    # request had been cut off. Now it is closed with the listener.
    import socket

    proxy = fault_proxy(world.registry, delay=2.0, delay_when=lambda m, p: m == "GET" and "/blobs/" in p)
    view = behind(proxy, world)
    view.publish()
    s = serve("--allow", f"{proxy.host}/test/*", "--drain-seconds", "1")
    slow_clients = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(20)]
    for c in slow_clients:
        c.sendall(b"POST /verify HTTP/1.1\r\nHost: x\r\n")
    answer: list = []
    in_flight = threading.Thread(target=lambda: answer.append(s.verify(stage_body(view))))
    in_flight.start()
    wait_for(lambda: any("/blobs/" in e.path for e in proxy.log), 10, "the verification is fetching")
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=40) == 0
    in_flight.join(timeout=30)
    assert answer and answer[0][0] == 200, answer
    assert events(s) == ["listening", "draining", "closing", "stopped"], s.logs()
    for c in slow_clients:
        c.settimeout(5)
        assert c.recv(1) == b"", "a half-sent head is closed at the stop, without an answer"
        c.close()


def test_past_the_connection_bound_slow_clients_make_room_for_the_probe_and_a_verification(world, serve):
    # 600 clients that send half a request head and wait, more than the 512
    # connections served at once. The kubelet's liveness probe (1 s timeout)
    # and a promotion used to wait behind them for the head timeout (30 s).
    import socket

    world.publish()
    s = serve(*allow(world))
    body = stage_body(world)
    slow_clients = []
    try:
        for _ in range(600):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(b"POST /verify HTTP/1.1\r\nHost: x\r\n")
            slow_clients.append(c)
        assert s.request("GET", "/healthz", timeout=1)[0] == 200
        assert s.verify(body)[0] == 200
    finally:
        for c in slow_clients:
            c.close()
    assert s.proc.poll() is None
