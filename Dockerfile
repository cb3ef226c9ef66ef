# The release-capsule action image: one static binary on an empty base.
#
# The one source of the image. The release workflow publishes it, multi-arch, to
# ghcr.io/<owner>/<repo>, which action.yml runs (docker://); the e2e workflow builds it
# for `uses: ./`; scripts/image builds it locally with buildah, whole or (--binary) as
# this final stage around a local build. The runner runs it as
#   docker run --workdir /github/workspace --rm -e ... -v <workspace>:/github/workspace ... <image> action
# (tests/py/test_container.py runs it so under podman). Build context: see .dockerignore.
#
# Deliberately absent from the final stage:
# - WORKDIR: the runner sets the working directory to /github/workspace itself, and
#   GitHub's documentation asks container actions not to set one.
# - USER: the workspace is a bind mount owned by the runner user, and files this step
#   writes there (and to $GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY under /github/file_commands)
#   must be readable and writable by later steps. GitHub runs container actions as the
#   image's default user and documents that it must be root; a non-root USER cannot
#   write to those mounts.
#
# Only BuildKit-independent instructions are used, so the legacy builder works too
# (TARGETARCH is then empty and the build stage's own architecture is used).

ARG RUST_VERSION=1.95

# Fully qualified: podman and buildah resolve no short names unless configured to.
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# musl-gcc compiles the C and assembly parts of dependencies (ring) for the static
# musl target. ca-certificates is already in the rust (buildpack-deps) image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/*

# The build stage runs on the target platform (under QEMU for a foreign one), so the
# musl target is the native architecture: amd64 -> x86_64, arm64 -> aarch64.
ARG TARGETARCH
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "$arch" in \
      amd64) target=x86_64-unknown-linux-musl ;; \
      arm64) target=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture: $arch (supported: amd64, arm64)" >&2; exit 1 ;; \
    esac; \
    rustup target add "$target"; \
    echo "$target" > /rust-target

# Helm and Kustomize for the pull-request preview (docs/preview.md), which renders as the
# Kargo stages do: Helm v3.21.3, the release Kargo's helm-template step embeds
# (helm.sh/helm/v3 in akuity/kargo's go.mod), and kustomize v5.7.1, the CLI built on the
# kustomize API Kargo pins (sigs.k8s.io/kustomize/api v0.20.1). Each download is checked
# against the sha256 its project publishes (Helm's release notes and .sha256sum files;
# kustomize's checksums.txt) before anything of it is used. A new version needs new sums.
# They wait in /opt/tools until scripts/rootfs puts them into /rootfs (below).
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    helm_version=3.21.3; kustomize_version=5.7.1; \
    case "$arch" in \
      amd64) helm_sha256=15e041a93a590dce8100f39385cd98c84a765c9e36aeeb9e2dc6ff9e4769e2e0; \
             kustomize_sha256=ea375e7372f9aa029129d4b2d16c66b7750b7f1213c4f66f910d981c895818d8 ;; \
      arm64) helm_sha256=67f58155079ff9ffab98ba5c88daff0ed9b542f3a4732f5dd426dde7dd0f5244; \
             kustomize_sha256=4261a040217df3bd6896597c3986d1465925726e4f22a945304b5233a4dcdbda ;; \
      *) echo "unsupported architecture: $arch (supported: amd64, arm64)" >&2; exit 1 ;; \
    esac; \
    mkdir -p /tmp/tools /opt/tools; \
    curl -fsSL --proto '=https' --retry 3 -o /tmp/tools/helm.tar.gz \
      "https://get.helm.sh/helm-v${helm_version}-linux-${arch}.tar.gz"; \
    echo "${helm_sha256}  /tmp/tools/helm.tar.gz" | sha256sum --check --strict -; \
    tar -xzf /tmp/tools/helm.tar.gz -C /tmp/tools "linux-${arch}/helm"; \
    install -m 0755 "/tmp/tools/linux-${arch}/helm" /opt/tools/helm; \
    curl -fsSL --proto '=https' --retry 3 -o /tmp/tools/kustomize.tar.gz \
      "https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2Fv${kustomize_version}/kustomize_v${kustomize_version}_linux_${arch}.tar.gz"; \
    echo "${kustomize_sha256}  /tmp/tools/kustomize.tar.gz" | sha256sum --check --strict -; \
    tar -xzf /tmp/tools/kustomize.tar.gz -C /tmp/tools kustomize; \
    install -m 0755 /tmp/tools/kustomize /opt/tools/kustomize; \
    rm -rf /tmp/tools; \
    /opt/tools/helm version --short; \
    /opt/tools/kustomize version

ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never

WORKDIR /src

# Dependencies first, against placeholder sources, so that this layer is reused until
# Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --target "$(cat /rust-target)" \
 && rm -rf src

# The real sources. touch: COPY keeps the context's mtimes, which can be older than the
# placeholder build; cargo would then keep the placeholder binary.
COPY src ./src
RUN target="$(cat /rust-target)" \
 && touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target "$target" \
 && cp "target/$target/release/release-capsule" /release-capsule

# /rootfs, everything the final stage holds, is laid out by scripts/rootfs and nothing
# else: scripts/image --binary runs the same script on a local build and hands the tree
# to this file's final stage (buildah bud --build-context build=<dir>), so a local
# image and a published one cannot differ in layout. Helm and kustomize are options of
# scripts/rootfs too (scripts/image --helm PATH --kustomize PATH).
COPY scripts/rootfs /usr/local/bin/rootfs
RUN rootfs /rootfs --binary /release-capsule --ca-bundle /etc/ssl/certs/ca-certificates.crt \
      --helm /opt/tools/helm --kustomize /opt/tools/kustomize \
 && /rootfs/release-capsule --version

FROM scratch

# /release-capsule, the CA bundle for TLS to registries and the GitHub API, an empty
# world-writable /tmp (scratch has none; temporary files go to /tmp), and helm and
# kustomize in /usr/local/bin for the preview: the tree scripts/rootfs lays out, and
# only it.
COPY --from=build /rootfs/ /

ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

LABEL org.opencontainers.image.title="release-capsule" \
      org.opencontainers.image.description="Build, publish and verify immutable OCI release capsules for Kargo promotions" \
      org.opencontainers.image.licenses="Apache-2.0"

ENTRYPOINT ["/release-capsule"]
