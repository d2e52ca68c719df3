#!/usr/bin/env bash
# One-time set-up of a fresh Debian 12 machine: system packages for the build and the
# models. Safe to run again. Run as root or with sudo available.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pkgs=(build-essential pkg-config cmake nasm libdlib-dev libopenblas-dev liblapack-dev protobuf-compiler python3-pip python3-venv curl)
need=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "setup: ERROR: cargo not found; install Rust stable with rustup (https://rustup.rs)" >&2
  exit 1
fi
"$root/scripts/fetch-models.sh"
