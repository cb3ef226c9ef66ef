"""The action image itself: its config and its files as a registry would serve
them, the tools scripts/image can add, and what makes the image built here (the
Dockerfile's final stage around a local binary, test_container.py's) the one
the workflows build and publish: one Dockerfile, whose /rootfs only
scripts/rootfs writes, the build context .dockerignore lets in, and the
workflows building that file. The `podman` and `action_image` fixtures are in
conftest.py.
"""

from __future__ import annotations

import platform
import re
import subprocess
import tarfile
import uuid
from pathlib import Path

import yaml

from image_layouts import from_container_storage

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# What scripts/rootfs lays out and so what the image holds: path -> (type, mode).
ROOTFS = {
    "etc": ("dir", 0o755),
    "etc/ssl": ("dir", 0o755),
    "etc/ssl/certs": ("dir", 0o755),
    "etc/ssl/certs/ca-certificates.crt": ("file", 0o644),
    "release-capsule": ("file", 0o755),
    "tmp": ("dir", 0o1777),
}


def test_the_image_config_and_files(podman, action_image, bin_path, tmp_path, capsys):
    manifest, config, layers = from_container_storage(action_image, tmp_path / "oci", podman.env)
    c = config["config"]
    assert c["Entrypoint"] == ["/release-capsule"] and not c.get("Cmd"), c
    assert not c.get("User"), "no USER: the runner's mounts are only writable by root (see the Dockerfile)"
    assert not c.get("WorkingDir"), "no WORKDIR: the runner sets /github/workspace itself"
    env = dict(item.split("=", 1) for item in c["Env"])
    assert env["SSL_CERT_FILE"] == CA_BUNDLE, env
    assert c["Labels"]["org.opencontainers.image.title"] == "release-capsule", c["Labels"]
    assert (config["os"], config["architecture"]) == ("linux", {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()])
    # One layer: exactly the tree scripts/rootfs laid out, owned by root.
    assert len(layers) == 1 and manifest["layers"][0]["mediaType"].endswith("tar+gzip"), manifest
    with tarfile.open(layers[0]) as tar:
        members = {m.name.rstrip("/").removeprefix("./"): m for m in tar.getmembers()}
        seen = {name: ("dir" if m.isdir() else "file" if m.isfile() else m.type, m.mode & 0o7777)
                for name, m in members.items()}
        assert seen == ROOTFS, seen
        assert all(m.uid == 0 and m.gid == 0 for m in members.values())
        assert tar.extractfile(members["release-capsule"]).read() == bin_path.read_bytes()
        assert tar.extractfile(members[env["SSL_CERT_FILE"].lstrip("/")]).read() == Path(CA_BUNDLE).read_bytes()
    compressed = sum(layer["size"] for layer in manifest["layers"])
    unpacked = sum(m.size for m in members.values())
    with capsys.disabled():
        print(f"\n[image] {action_image}: {compressed / 2**20:.1f} MiB compressed in {len(layers)} gzip layer "
              f"({unpacked / 2**20:.1f} MiB unpacked), from the test binary {bin_path.name} "
              f"({bin_path.stat().st_size / 2**20:.1f} MiB, a debug build)")


def test_helm_and_kustomize_land_on_the_images_path(podman, bin_path, tmp_path):
    """scripts/image --helm/--kustomize: the files issue 15's tools take, run from
    the image's PATH. Stand-ins: copies of the static test binary."""
    tag = f"localhost/release-capsule-test:tools-{uuid.uuid4().hex[:8]}"
    podman.build(tag, bin_path, "--helm", str(bin_path), "--kustomize", str(bin_path))
    try:
        for tool in ("helm", "kustomize"):
            ran = podman.run("run", "--rm", "--network", "host", "--entrypoint", tool, tag, "--version")
            assert ran.returncode == 0 and ran.stdout.startswith("release-capsule "), (tool, ran.stderr)
    finally:
        podman.remove_image(tag)


# -- one source for the image --------------------------------------------------------------

def dockerfile_stages(path: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions per stage: [(INSTRUCTION, arguments)]."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#")))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), " ".join(rest.split())))
    return stages


def test_the_rootfs_comes_from_scripts_rootfs_alone(repo_root):
    """The published image (the whole Dockerfile) and the local one (scripts/image
    --binary) hold the same tree: the build stage makes /rootfs with scripts/rootfs
    and nothing else writes there, the final stage holds /rootfs and nothing else,
    and scripts/image runs the same script."""
    build, final = dockerfile_stages(repo_root / "Dockerfile")
    assert build[0][1].endswith(" AS build"), build[0]
    copy_script = [args for ins, args in build if ins == "COPY" and args.startswith("scripts/rootfs ")]
    assert len(copy_script) == 1, build
    script = copy_script[0].split()[1]
    name = script.rsplit("/", 1)[-1] if script.startswith("/usr/local/bin/") else script
    touching = [args for ins, args in build if "/rootfs" in args and ins != "COPY"]
    assert len(touching) == 1 and touching[0].startswith(f"{name} /rootfs "), touching
    rest = touching[0].removeprefix(f"{name} /rootfs ").replace("/rootfs/release-capsule --version", "")
    assert "/rootfs" not in rest, f"only scripts/rootfs writes to /rootfs: {touching[0]}"
    assert [(ins, args) for ins, args in final if ins in ("COPY", "ADD", "RUN")] == [("COPY", "--from=build /rootfs/ /")]
    assert final[0] == ("FROM", "scratch")
    assert '"$repo_root/scripts/rootfs"' in (repo_root / "scripts/image").read_text()


def test_the_build_context_holds_what_the_dockerfile_copies(podman, repo_root, tmp_path):
    """.dockerignore is an allow-list; buildah applies it as docker does. The
    Dockerfile's COPY sources must be in it, and nothing else of the checkout."""
    probe = tmp_path / "context.Dockerfile"
    probe.write_text("FROM scratch\nCOPY . /context/\n")
    tag = f"localhost/release-capsule-test:context-{uuid.uuid4().hex[:8]}"
    built = subprocess.run(["buildah", "bud", "--quiet", "--file", str(probe), "--tag", tag, str(repo_root)],
                           env=podman.env, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    try:
        _, _, layers = from_container_storage(tag, tmp_path / "oci", podman.env)
        with tarfile.open(layers[0]) as tar:
            files = {m.name.removeprefix("context/") for m in tar.getmembers() if m.isfile()}
    finally:
        podman.remove_image(tag)
    allowed = {"Cargo.toml", "Cargo.lock", "scripts/rootfs",
               *(str(p.relative_to(repo_root)) for p in (repo_root / "src").rglob("*") if p.is_file())}
    assert files == allowed, sorted(files ^ allowed)
    sources = [src.rstrip("/") for stage in dockerfile_stages(repo_root / "Dockerfile") for ins, args in stage
               if ins == "COPY" and not args.startswith("--from") for src in args.split()[:-1]]
    assert sources and all(src in files or any(f.startswith(src + "/") for f in files) for src in sources), sources


def test_the_workflows_publish_and_test_the_dockerfiles_image(repo_root):
    """release.yml pushes what the Dockerfile at the root builds, for the two
    architectures its build stage supports; e2e.yml builds the same Dockerfile
    under the reference action.yml names, then runs `uses: ./`."""
    workflows = repo_root / ".github/workflows"
    release = yaml.safe_load((workflows / "release.yml").read_text())
    pushes = [s for job in release["jobs"].values() for s in job.get("steps", [])
              if str(s.get("uses", "")).startswith("docker/build-push-action@")]
    assert len(pushes) == 1, pushes
    with_ = pushes[0]["with"]
    assert with_["context"] == "." and with_.get("file", "Dockerfile") in ("Dockerfile", "./Dockerfile"), with_
    assert set(with_["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    dockerfile = (repo_root / "Dockerfile").read_text()
    assert "amd64) target=x86_64-unknown-linux-musl" in dockerfile and "arm64) target=aarch64-unknown-linux-musl" in dockerfile

    steps = yaml.safe_load((workflows / "e2e.yml").read_text())["jobs"]["capsule"]["steps"]
    builds = [i for i, s in enumerate(steps) if re.search(r'^\s*docker build -t "\$image" \.$', s.get("run", ""), re.M)]
    uses_local = [i for i, s in enumerate(steps) if s.get("uses") == "./"]
    assert len(builds) == 1 and uses_local and min(uses_local) > builds[0], (builds, uses_local)
    assert "sed -n 's|^  image: docker://||p' action.yml" in steps[builds[0]]["run"]
