#!/usr/bin/env bash
# The README's first command: set up a fresh Debian machine, build lookalike, build the
# bundled demo gallery (35 well-known people) and match the demo photos against it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
./scripts/setup.sh
echo "demo: building (release; the first build takes a few minutes)" >&2
cargo build --release --locked -p lookalike-matcher --bin matcher
matcher="$root/target/release/matcher"
gallery="$root/assets/demo/gallery.lkg"
# Rebuilt when missing, older than its catalog, or made by an older build (no crowding figures).
if [ ! -f "$gallery" ] || [ "$root/assets/demo/catalog.json" -nt "$gallery" ] \
  || ! "$matcher" gallery info "$gallery" 2>/dev/null | grep -q '"crowding":true'; then
  echo "demo: building the demo gallery" >&2
  "$matcher" gallery build --photos assets/demo/photos --catalog assets/demo/catalog.json --out "$gallery" --jitters 10
fi
echo "demo: matching assets/demo/queries/* (one JSON line per photo)" >&2
"$matcher" match --gallery "$gallery" --top-k 3 assets/demo/queries/*.jpg assets/demo/queries/*.png
