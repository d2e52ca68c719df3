#!/usr/bin/env bash
# lookalike's benchmark suite (issue 6): one command for every benchmark, side by side with
# the reference peer (shared/peers/seed_pipeline.py) on the same photos in the same run.
# Prints a table and writes docs/BENCHMARKS.md and docs/benchmarks.png.
#
#   scripts/bench.sh                  full run: ~50 min on 2 quiet cores (measured 2026-11-30: 18 min of
#                                     it build the 1M HNSW graph, 12 min embed lfw-dev; the peer's LFW
#                                     embeddings, ~30 min, are cached in ~/.cache/lookalike-bench)
#   scripts/bench.sh --quick          small inputs, a few minutes (a smoke test of every section)
#   scripts/bench.sh --sections throughput,grpc   only these sections (+ the report)
#   scripts/bench.sh --fresh          ignore cached LFW embeddings
#   scripts/bench.sh --extra          also the peer at --upsample 1 on lfw-dev (about 25 min more the
#                                     first time; cached)
#   scripts/bench.sh --no-docs        print the table only (do not touch docs/)
#   scripts/bench.sh --sections cards --splice   re-run sections and put only their parts into the
#                                     existing docs/BENCHMARKS.md (the rest of the report stays as it was)
#
# Sections: embed accuracy throughput grpc stages search gbuild cards (embed feeds accuracy,
# search and the 12k gallery, so it runs whenever one of them does; from the cache when it can;
# cards needs neither it nor the peer).
# Environment: LOOKALIKE_FACES (default <repo>/../shared/faces), LOOKALIKE_MODELS (default
# <repo>/assets/models), BENCH_NOTE (a Markdown file shown under the report's header), PEER_PYTHON (default: the venv of shared/peers/setup.sh, built if
# missing), CARGO_TARGET_DIR (default <repo>/target), LOOKALIKE_BENCH_CACHE (default
# ~/.cache/lookalike-bench), BENCH_REPS (throughput repetitions, default 3).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
all_sections="embed,accuracy,throughput,grpc,stages,search,gbuild,cards,flood"
quick=0 fresh=0 docs=1 extra=0 splice=0 sections=$all_sections
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --fresh) fresh=1 ;;
    --extra) extra=1 ;;
    --no-docs) docs=0 ;;
    --splice) splice=1 ;;
    --sections) sections="$2"; shift ;;
    --sections=*) sections="${1#*=}" ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ",$sections," == *",$1,"* ]]; }
# The LFW embeddings and the 12k gallery feed every section but cards; so does the peer.
need_lfw=0
for sec in embed accuracy throughput grpc stages search gbuild; do want "$sec" && need_lfw=1; done
[ $need_lfw = 1 ] && sections="embed,$sections"

faces=${LOOKALIKE_FACES:-$repo/../shared/faces}
faces=$(cd "$faces" && pwd)
export LOOKALIKE_MODELS=${LOOKALIKE_MODELS:-$repo/assets/models}
peer_script=${PEER_SCRIPT:-$repo/../shared/peers/seed_pipeline.py}
peer_script=$(cd "$(dirname "$peer_script")" && pwd)/$(basename "$peer_script")
export PEER_SCRIPT=$peer_script
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
cache=${LOOKALIKE_BENCH_CACHE:-$HOME/.cache/lookalike-bench}
reps=${BENCH_REPS:-3}
export OPENBLAS_NUM_THREADS=1   # as .cargo/config.toml sets for lookalike; the peer's dlib too
mode=$([ $quick = 1 ] && echo quick || echo full)
out="$CARGO_TARGET_DIR/bench/$mode"
# A full set of sections starts from a clean results folder; --sections adds to the last one.
[ "${sections#embed,}" = "${all_sections#embed,}" ] && rm -rf "$out"
mkdir -p "$out" "$cache"
started=$(date +%s)
log() { printf '[bench %4ds] %s\n' $(( $(date +%s) - started )) "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
peer_py=${PEER_PYTHON:-$HOME/.cache/lookalike-peer/venv/bin/python}
if [ $need_lfw = 1 ] && [ ! -x "$peer_py" ]; then
  log "building the peer's venv (shared/peers/setup.sh)"
  peer_py=$("$(dirname "$peer_script")/setup.sh")
fi
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib, numpy' 2>/dev/null; then
  log "creating $venv (matplotlib, numpy) for the report"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q matplotlib numpy
fi
log "building (release): matcher, lookalike-bench"
(cd "$repo" && cargo build --release -q -p lookalike-matcher -p lookalike-bench)
bench="$CARGO_TARGET_DIR/release/lookalike-bench"
matcher="$CARGO_TARGET_DIR/release/matcher"
peer() { "$peer_py" "$repo/scripts/bench/peer.py" "$@"; }

# --- inputs ------------------------------------------------------------------------------
lfw="$faces/lfw-dev" tg="$faces/tg1280" hires="$faces/hires"
if [ $quick = 1 ]; then
  people_arg="--people 300"; tag=q300
  search_sizes=12000,100000; search_queries=200; nmslib_efc=200; grpc_secs=3; grpc_conc=1,4,16; passes=1; reps=1
  gbuild_photos="$faces/named/face_recognition"; stage_reps=1
else
  people_arg=""; tag=all
  search_sizes=12000,100000,1000000; search_queries=300; nmslib_efc=2000; grpc_secs=15; grpc_conc=1,2,4,8,16; passes=2
  gbuild_photos="$tg"; stage_reps=3
fi
tg_photos=$(find "$tg" -type f \( -name '*.jpg' -o -name '*.png' \) | sort)

# Cache keys: the engine's source and models (lookalike), the peer's script and dlib (peer).
# Only the code that shapes an embedding counts (search, gallery and calibration do not).
engine_key=$( (cd "$repo" && find services/engine -type f -not -path '*/tests/*' -not -path '*/src/search/*' \
  -not -path '*/src/gallery/*' -not -name calibration.rs | sort | xargs sha256sum; ls -l "$LOOKALIKE_MODELS") | sha256sum | cut -c1-12)
peer_key=none
[ $need_lfw = 1 ] && peer_key=$( (cat "$peer_script"; "$peer_py" -c 'import dlib, sys; print(dlib.__version__, sys.version)') | sha256sum | cut -c1-12)
[ $fresh = 1 ] && rm -f "$cache"/lk-*"$tag"* "$cache"/peer-*"$tag"*
list="$cache/lfw-$tag.tsv"

# --- 1. LFW embeddings (cached) ----------------------------------------------------------
lk_embed() { # name jitters extra-args...
  local name=$1 j=$2; shift 2
  local f="$cache/lk-$engine_key-$tag-$name.f32"
  if [ ! -s "$f" ]; then
    log "lookalike: embedding lfw-dev ($name)"
    "$bench" embed --photos "$lfw" $people_arg --jitters "$j" --workers 2 --out "$f.tmp" --list-out "$list" \
      --json "$f.json" "$@" >/dev/null
    mv "$f.tmp" "$f"
  fi
  cp "$f.json" "$out/embed_lk_$name.json"
  echo "$f"
}
peer_embed() { # name upsample jitters extra-args...
  local name=$1 up=$2 j=$3; shift 3
  local f="$cache/peer-$peer_key-$tag-$name.f32"
  if [ ! -s "$f" ]; then
    log "peer: embedding lfw-dev ($name), 2 processes"
    peer embed --models "$LOOKALIKE_MODELS" --list "$list" --upsample "$up" --jitters "$j" --procs 2 \
      --out "$f.tmp" --json "$f.json" "$@" >/dev/null
    mv "$f.tmp" "$f"
  fi
  cp "$f.json" "$out/embed_peer_$name.json"
  echo "$f"
}
if [ $need_lfw = 1 ]; then
  lk_q0=$(lk_embed q0 0)
  # The 12k gallery (real LFW embeddings, padded with synthetic ones) for serving and matching.
  "$bench" make-gallery --emb "$lk_q0" --list "$list" --size 12000 --out "$out/g12k.lkg" --peer-prefix "$out/g12k" >/dev/null
  peer --peer "$peer_script" npz --rows "$out/g12k.f32" --names "$out/g12k.names" --out "$out/g12k.npz" >/dev/null
fi

# --- 2. photos per second on tg1280: engine 1/2 workers vs the peer, interleaved ---------
if want throughput; then
  for r in $(seq 1 "$reps"); do
    log "throughput rep $r/$reps: lookalike"
    "$bench" throughput --photos "$tg" --gallery "$out/g12k.lkg" --workers 1,2 --passes "$passes" --mirror-too \
      --json "$out/thr_lk_r$r.json" >/dev/null
    for up in 1 0; do
      for p in 1 2; do
        # Two processes only in the first repetition (the slow part of the run).
        [ "$p" = 2 ] && [ "$r" != 1 ] && continue
        log "throughput rep $r/$reps: peer --upsample $up, $p process(es)"
        # shellcheck disable=SC2086
        peer timed -- "$peer_py" "$peer_script" match --models "$LOOKALIKE_MODELS" --gallery "$out/g12k.npz" \
          --upsample "$up" --workers "$p" $tg_photos > "$out/thr_peer_u${up}_p${p}_r$r.json"
      done
    done
  done
fi

# --- 3. gRPC server under load (and its memory) -------------------------------------------
if want grpc; then
  log "gRPC load: matcher serve with 1 and 2 workers, concurrency $grpc_conc"
  "$bench" grpc --matcher "$matcher" --gallery "$out/g12k.lkg" --photos "$tg" --workers 1,2 \
    --concurrency "$grpc_conc" --seconds "$grpc_secs" --passes "$passes" --json "$out/grpc.json" >/dev/null
fi

# --- 4. per-stage latency at 640 / 1280 / ~4000 px ----------------------------------------
if want stages; then
  log "per-stage latency"
  "$bench" stages --photos "$hires" --gallery "$out/g12k.lkg" --reps "$stage_reps" --json "$out/stages.json" >/dev/null
fi

# --- 5. search: exact vs HNSW vs the peer's NumPy and nmslib ------------------------------
if want search; then
  log "search: lookalike exact and HNSW at $search_sizes"
  "$bench" search --emb "$lk_q0" --list "$list" --sizes "$search_sizes" --queries "$search_queries" --data-dir "$out/search-data" \
    --ef 16,32,48,64,96,128,200 \
    --json "$out/search_lk.json" >/dev/null
  log "search: peer NumPy and nmslib"
  # nmslib: the peer's M=100/efConstruction=2000 at 12k; M=16/efConstruction=100 from 100k on
  # (M=100/efC=2000 would take hours on 2 cores). lookalike builds with its defaults (M=24/efC=200).
  peer search --data-dir "$out/search-data" --sizes "$search_sizes" --efc "$nmslib_efc" --efc-full-max 20000 --M-large 16 --efc-large 100 --json "$out/search_peer.json" >/dev/null
  rm -rf "$out/search-data"
fi

# --- 6. gallery build throughput -----------------------------------------------------------
if want gbuild; then
  log "gallery build: lookalike (jitters 10 and 0; 1 and 2 workers)"
  "$bench" gallery-build --photos "$gbuild_photos" --jitters 10,0 --workers 1,2 --json "$out/gbuild_lk.json" >/dev/null
  for j in 10 0; do
    log "gallery build: peer (jitters $j, its default upsample 1, one process)"
    "$peer_py" "$peer_script" build --models "$LOOKALIKE_MODELS" --photos "$gbuild_photos" --jitters "$j" \
      --out "$out/gbuild_peer_j$j.npz" 2>/dev/null | tail -n 1 > "$out/gbuild_peer_j$j.json"
  done
fi

# --- 7. accuracy on lfw-dev (last: the slow, not timing-critical part) -------------------
if want accuracy; then
  lk_g10=$(lk_embed g10 10 --first-only)
  # lookalike ranks as the matcher does by default (crowding correction, weight 0.4);
  # the *_plain rows rank by plain distance (--crowding-weight 0), as the peer's rows do
  # (the peer's own `match` ranks by plain distance).
  acc() { "$bench" accuracy --list "$list" --pairs "$lfw/pairsDevTrain.txt" --label "$1" --gallery "$2" --queries "$3" --json "$out/acc_$1.json" "${@:4}" >/dev/null; }
  # The peer as measured before (--upsample 0), gallery jitters 10 (its build default) and 0.
  peer_u0_q0=$(peer_embed u0-q0 0 0)
  peer_u0_g10=$(peer_embed u0-g10 0 10 --first-only)
  acc lk_g0 "$lk_q0" "$lk_q0"
  acc lk_g10 "$lk_g10" "$lk_q0"
  acc lk_g10_plain "$lk_g10" "$lk_q0" --crowding-weight 0
  acc peer_u0_g0 "$peer_u0_q0" "$peer_u0_q0" --crowding-weight 0
  acc peer_u0_g10 "$peer_u0_g10" "$peer_u0_q0" --crowding-weight 0
  # Extra (--extra, or when already cached): the peer at --upsample 1 (the original service's setting).
  if [ $extra = 1 ] || [ -s "$cache/peer-$peer_key-$tag-u1-q0.f32" ]; then
    peer_u1_q0=$(peer_embed u1-q0 1 0)
    acc peer_u1_g0 "$peer_u1_q0" "$peer_u1_q0" --crowding-weight 0
  fi
  if [ -n "${peer_u1_q0:-}" ] && { [ $extra = 1 ] || [ -s "$cache/peer-$peer_key-$tag-u1-g10.f32" ]; }; then
    peer_u1_g10=$(peer_embed u1-g10 1 10 --first-only)
    acc peer_u1_g10 "$peer_u1_g10" "$peer_u1_q0" --crowding-weight 0
  fi
  # lookalike's --mirror option (mirror-averaged query embeddings; the jitter-10 gallery
  # already averages random mirror images).
  lk_mirror=$(lk_embed mirror-q0 0 --mirror)
  acc lk_mirror_g10 "$lk_g10" "$lk_mirror"
  acc lk_mirror_g10_plain "$lk_g10" "$lk_mirror" --crowding-weight 0
  acc lk_mirror_g0 "$lk_mirror" "$lk_mirror"
fi

# --- 8. reply cards: composing the card vs the match, for the same photo --------------------
if want cards; then
  log "reply cards: compose cost vs the match (demo gallery: real thumbnails)"
  "$matcher" gallery build --quiet --photos "$repo/assets/demo/photos" --catalog "$repo/assets/demo/catalog.json" \
    --out "$out/demo.lkg" >/dev/null
  card_out=(); [ $docs = 1 ] && card_out=(--out "$repo/docs/cards")
  # The Cyrillic card shows the name a Russian-language gallery would carry.
  "$bench" cards --gallery "$out/demo.lkg" --reps 20 "${card_out[@]}" --name "kit-harington=Кит Харингтон" \
    "single=$tg/Barack_Obama/1.jpg" "group=$faces/scenes/group-t1.jpg" "cyrillic=$tg/Kit_Harington/2.jpg" \
    --json "$out/cards.json" >/dev/null
fi

# --- report -------------------------------------------------------------------------------
# --- 10. a flood of the worst photos: memory and CPU per photo, with and without the fallback share
if want flood; then
  log "flood: the worst photos and same-size pairs with and without a face, default vs no fallback share"
  [ -s "$out/demo.lkg" ] || "$matcher" gallery build --quiet --photos "$repo/assets/demo/photos" \
    --catalog "$repo/assets/demo/catalog.json" --out "$out/demo.lkg" >/dev/null
  rounds=$([ $quick = 1 ] && echo 1 || echo 4)
  # "burst spent": the same build with a 0.1-s burst, the steady state of a long flood.
  "$bench" flood --matcher "default=$matcher" --matcher "burst-spent=$matcher --fallback-burst-seconds 0.1" \
    --matcher "every-pass=$matcher --fallback-share 1" --gallery "$out/demo.lkg" --workers 2 --callers 6 \
    --rounds "$rounds" --budget-mb 691 --max-megapixels 16 --sizes --json "$out/flood.json" >/dev/null
fi

log "report"
rargs=(--results "$out" --mode "$mode" --repo "$repo" --peer-python "$peer_py" --seconds $(( $(date +%s) - started )))
if [ $docs = 1 ] && [ $splice = 1 ]; then
  rargs+=(--splice "$repo/docs/BENCHMARKS.md" --only "${sections#embed,}")
elif [ $docs = 1 ]; then
  rargs+=(--md "$repo/docs/BENCHMARKS.md" --plot "$repo/docs/benchmarks.png")
fi
# BENCH_NOTE: a Markdown file put under the header (how a run made in parts was assembled).
[ -n "${BENCH_NOTE:-}" ] && rargs+=(--note "$BENCH_NOTE")
"$venv/bin/python" "$repo/scripts/bench/report.py" "${rargs[@]}"
log "done; raw results in $out"
