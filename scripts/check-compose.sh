#!/usr/bin/env bash
# Validates compose.yaml (TELEGRAM_BOT_TOKEN=... docker compose up) without Docker.
#
#   scripts/check-compose.sh               # check compose.yaml
#   scripts/check-compose.sh --self-test   # also prove that typical mistakes are caught
#   scripts/check-compose.sh --file PATH   # check another compose file
#
# 1. Installs (once, into a cache; idempotent) the Compose Specification's JSON schema, as
#    vendored in the PyPI wheel check-jsonschema==$CHECK_JSONSCHEMA_VERSION (wheel and schema
#    sha256-verified), and jsonschema + PyYAML from PyPI into a venv.
# 2. Interpolates ${VAR}, ${VAR:-default}, ${VAR:?error}, ... and $$ like Compose, with
#    TELEGRAM_BOT_TOKEN set (and again with LOOKALIKE_GALLERY_DIR set too); never reads .env or
#    the caller's environment. Without TELEGRAM_BOT_TOKEN the interpolation must fail with a
#    message naming it.
# 3. Validates each result against the schema (draft 2020-12).
# 4. Policy: every service has a numeric non-root user, read_only, a /tmp tmpfs, cap_drop ALL,
#    no-new-privileges, no privileged/host namespaces, CPU and memory limits; long-running
#    services restart unless-stopped/always and have a health check that uses no tool the
#    images lack (curl, wget, grpc_health_probe); a one-shot service (another waits for it with
#    service_completed_successfully) restarts only on failure; the matcher's workers equal its
#    CPU limit and its gallery is read-only, after the one-shot; the gateway polls, needs
#    TELEGRAM_BOT_TOKEN (${...:?}), keeps its state and prefs on a named volume, runs once
#    (fixed container_name, no replicas) and waits for a healthy matcher.
# 5. If `docker compose` is installed, `docker compose config --quiet` too (skipped otherwise).
# Exits non-zero on any violation.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
file="$root/compose.yaml"
self_test=0
while [ $# -gt 0 ]; do
  case "$1" in
    --self-test) self_test=1; shift ;;
    --file) file="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "check-compose: unknown argument: $1" >&2; exit 2 ;;
  esac
done

CHECK_JSONSCHEMA_VERSION="${CHECK_JSONSCHEMA_VERSION:-0.39.0}"
CHECK_JSONSCHEMA_SHA256="14ce5c94871c551268ea948ffe21e9f1464dc48fb20bf9a4c13deeaaf756cf9b"  # the wheel
COMPOSE_SPEC_SHA256="d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"     # compose-spec.json in it
JSONSCHEMA_VERSION="${JSONSCHEMA_VERSION:-4.26.0}"
PYYAML_VERSION="${PYYAML_VERSION:-6.0.3}"
cache="${LOOKALIKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lookalike}/compose-tools-$CHECK_JSONSCHEMA_VERSION-$JSONSCHEMA_VERSION"

# ---- 1. tools --------------------------------------------------------------------------------
if [ ! -f "$cache/.ok" ]; then
  echo "check-compose: installing the compose-spec schema (check-jsonschema==$CHECK_JSONSCHEMA_VERSION), jsonschema==$JSONSCHEMA_VERSION, PyYAML==$PYYAML_VERSION into $cache" >&2
  rm -rf "$cache"
  if ! python3 -m venv "$cache" >/dev/null 2>&1; then
    echo "check-compose: ERROR: 'python3 -m venv' failed (Debian: apt-get install python3-venv)" >&2; exit 1
  fi
  mkdir -p "$cache/dl"
  if ! "$cache/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$cache/dl" \
        "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" >"$cache/pip.log" 2>&1 \
     || ! "$cache/bin/python" -m pip install --quiet --disable-pip-version-check \
        "jsonschema==$JSONSCHEMA_VERSION" "PyYAML==$PYYAML_VERSION" >>"$cache/pip.log" 2>&1; then
    echo "check-compose: ERROR: could not install the tools from PyPI; pip said:" >&2
    tail -n 8 "$cache/pip.log" >&2
    exit 1
  fi
  whl="$cache/dl/check_jsonschema-$CHECK_JSONSCHEMA_VERSION-py3-none-any.whl"
  got="$(sha256sum "$whl" 2>/dev/null | cut -d' ' -f1)"
  if [ "$got" != "$CHECK_JSONSCHEMA_SHA256" ]; then
    echo "check-compose: ERROR: $whl: sha256 ${got:-missing}, expected $CHECK_JSONSCHEMA_SHA256" >&2; exit 1
  fi
  "$cache/bin/python" - "$whl" "$cache/compose-spec.json" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("check_jsonschema/builtin_schemas/vendor/compose-spec.json"))
PY
  got="$(sha256sum "$cache/compose-spec.json" | cut -d' ' -f1)"
  if [ "$got" != "$COMPOSE_SPEC_SHA256" ]; then
    echo "check-compose: ERROR: compose-spec.json: sha256 $got, expected $COMPOSE_SPEC_SHA256" >&2; exit 1
  fi
  rm -rf "$cache/dl"
  touch "$cache/.ok"
fi
py="$cache/bin/python"
docker_compose=""
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then docker_compose=1; fi

# ---- 2.-5. interpolate, validate, policy ------------------------------------------------------
check_file() { # $1 = compose file; prints the report; returns non-zero on any problem
  local f="$1" rc=0
  "$py" - "$f" "$cache/compose-spec.json" <<'PY' || rc=1
import json, re, sys
import jsonschema, yaml

path, schema_path = sys.argv[1], sys.argv[2]
problems = []

def bad(where, msg):
    problems.append(f"[{where}] {msg}")

class Missing(Exception):
    pass

NAME = r"[A-Za-z_][A-Za-z0-9_]*"

def interpolate(s, env):
    """Compose's interpolation of one string: $$, $VAR, ${VAR}, ${VAR[:]-default},
    ${VAR[:]?error}, ${VAR[:]+replacement}; defaults may nest."""
    out, i = [], 0
    while i < len(s):
        if s[i] != "$":
            out.append(s[i]); i += 1; continue
        if s.startswith("$$", i):
            out.append("$"); i += 2; continue
        if s.startswith("${", i):
            depth, j = 1, i + 2  # j: past the matching }
            while j < len(s) and depth:
                if s.startswith("${", j):
                    depth += 1; j += 2; continue
                depth -= s[j] == "}"
                j += 1
            if depth:
                raise Missing(f"unclosed ${{ in {s!r}")
            body = s[i + 2:j - 1]
            m = re.fullmatch(rf"({NAME})(?:(:?)([-?+])(.*))?", body, re.S)
            if not m:
                raise Missing(f"invalid interpolation format for {s!r}")
            name, colon, op, arg = m.group(1), m.group(2), m.group(3), m.group(4) or ""
            val = env.get(name)
            unset = val is None or (colon and val == "")
            if op is None:
                out.append(val or "")
            elif op == "-":
                out.append(interpolate(arg, env) if unset else val)
            elif op == "?":
                if unset:
                    raise Missing(f"required variable {name} is missing a value: {interpolate(arg, env)}")
                out.append(val)
            else:
                out.append("" if unset else interpolate(arg, env))
            i = j; continue
        m = re.match(NAME, s[i + 1:])
        if m:
            out.append(env.get(m.group(0)) or ""); i += 1 + m.end(); continue
        out.append("$"); i += 1
    return "".join(out)

def walk(node, env):
    if isinstance(node, dict):
        return {k: walk(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [walk(v, env) for v in node]
    return interpolate(node, env) if isinstance(node, str) else node

with open(path, encoding="utf-8") as f:
    raw = yaml.safe_load(f)
with open(schema_path, encoding="utf-8") as f:
    schema = json.load(f)
validator = jsonschema.validators.validator_for(schema)(schema)

# The gateway cannot start without a token: Compose must stop with a message naming it.
try:
    walk(raw, {})
    bad("interpolation", "without TELEGRAM_BOT_TOKEN the file interpolates: use ${TELEGRAM_BOT_TOKEN:?message}")
except Missing as e:
    if "TELEGRAM_BOT_TOKEN" not in str(e):
        bad("interpolation", f"without TELEGRAM_BOT_TOKEN: {e}")

TOKEN = "123456789:check-compose-dummy-token-0123456789"
variants = {"token": {"TELEGRAM_BOT_TOKEN": TOKEN},
            "token+gallery-dir": {"TELEGRAM_BOT_TOKEN": TOKEN, "LOOKALIKE_GALLERY_DIR": "/srv/lookalike/gallery"}}
models = {}
for where, env in variants.items():
    try:
        models[where] = walk(raw, env)
    except Missing as e:
        bad(where, f"interpolation: {e}")
        continue
    for e in sorted(validator.iter_errors(models[where]), key=lambda e: list(e.path)):
        bad(where, f"schema: {'.'.join(str(p) for p in e.path) or '(top)'}: {e.message[:200]}")

# ---- policy ----------------------------------------------------------------------------------
NO_TOOLS = ("curl", "wget", "grpc_health_probe")  # not in the images (Dockerfile)

def env_of(svc):
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, None) for x in e)
    return {k: (None if v is None else str(v)) for k, v in e.items()}

def mounts(svc, vols_top):
    """[(source, target, read_only, kind)] of the service's volumes (short and long syntax)."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            src, tgt = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
            kind = "bind" if src and (src.startswith(("/", ".", "~"))) else ("volume" if src else "anonymous")
            out.append((src, tgt, ro, kind))
        else:
            out.append((v.get("source"), v.get("target"), bool(v.get("read_only")), v.get("type")))
    return out

def mem_bytes(v):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", str(v).strip().lower())
    return m and float(m.group(1)) * {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2)]

for where, model in models.items():
    services = model.get("services") or {}
    oneshot = {dep for s in services.values() if isinstance(s.get("depends_on"), dict)
               for dep, d in s["depends_on"].items() if (d or {}).get("condition") == "service_completed_successfully"}
    for name, s in services.items():
        who = f"service {name}"
        user = str(s.get("user") or "")
        if not re.fullmatch(r"[1-9]\d*(:\d+)?", user):
            bad(where, f"{who}: user must be a numeric non-root uid[:gid] (got {user!r})")
        if s.get("read_only") is not True:
            bad(where, f"{who}: read_only must be true")
        tmpfs = s.get("tmpfs") or []
        tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
        if not any(t.split(":")[0] == "/tmp" for t in tmpfs) and not any(
                m[1] == "/tmp" and m[3] == "tmpfs" for m in mounts(s, model.get("volumes"))):
            bad(where, f"{who}: /tmp must be a tmpfs (read-only root)")
        if "ALL" not in (s.get("cap_drop") or []) or s.get("cap_add"):
            bad(where, f"{who}: cap_drop must contain ALL and cap_add be empty")
        if not any(re.fullmatch(r"no-new-privileges(:true|=true)?", str(o)) for o in s.get("security_opt") or []):
            bad(where, f"{who}: security_opt must contain no-new-privileges:true")
        if s.get("privileged") or s.get("network_mode") == "host" or s.get("pid") == "host" or s.get("ipc") == "host":
            bad(where, f"{who}: privileged and host namespaces are not allowed")
        lim = ((s.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        if "cpus" not in lim or "memory" not in lim:
            bad(where, f"{who}: deploy.resources.limits needs cpus and memory (docs/OPERATIONS.md, Sizing)")
        restart = str(s.get("restart") or "no")
        hc = s.get("healthcheck") or {}
        if name in oneshot:
            if not re.fullmatch(r"no|on-failure(:\d+)?", restart):
                bad(where, f"{who}: a one-shot service must restart 'no' or on-failure (got {restart!r}: it would run again and again)")
        else:
            if restart not in ("unless-stopped", "always"):
                bad(where, f"{who}: restart must be unless-stopped (got {restart!r})")
            test = hc.get("test")
            if hc.get("disable") or not test or test in (["NONE"], "NONE"):
                bad(where, f"{who}: a healthcheck is needed")
            else:
                words = " ".join(test if isinstance(test, list) else [test])
                used = [t for t in NO_TOOLS if re.search(rf"\b{t}\b", words)]
                if used:
                    bad(where, f"{who}: the healthcheck uses {used}, which the image does not have")

    m = services.get("matcher")
    if not m:
        bad(where, "service matcher missing")
    else:
        env = env_of(m)
        cpus = str((((m.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get("cpus"))
        try:
            if int(env.get("LOOKALIKE_WORKERS") or 0) != -(-float(cpus) // 1):
                bad(where, f"matcher: LOOKALIKE_WORKERS={env.get('LOOKALIKE_WORKERS')!r} must equal the CPU limit ({cpus})")
        except ValueError:
            bad(where, f"matcher: LOOKALIKE_WORKERS {env.get('LOOKALIKE_WORKERS')!r} / cpus {cpus!r} not numbers")
        gal = [x for x in mounts(m, model.get("volumes")) if x[1] == "/var/lib/lookalike/gallery"]
        if not gal or not gal[0][2]:
            bad(where, "matcher: /var/lib/lookalike/gallery must be mounted read-only")
        deps = m.get("depends_on") or {}
        if not any(d in oneshot for d in (deps if isinstance(deps, dict) else [])):
            bad(where, "matcher: must wait for the gallery build (depends_on condition service_completed_successfully)")
    g = services.get("gateway")
    if not g:
        bad(where, "service gateway missing")
    else:
        env = env_of(g)
        if env.get("GATEWAY_MODE") != "polling":
            bad(where, f"gateway: GATEWAY_MODE must be polling (got {env.get('GATEWAY_MODE')!r})")
        rawenv = ((raw.get("services") or {}).get("gateway") or {}).get("environment") or {}
        tok = rawenv.get("TELEGRAM_BOT_TOKEN") if isinstance(rawenv, dict) else None
        if not re.fullmatch(r"\$\{TELEGRAM_BOT_TOKEN:\?.+\}", str(tok or ""), re.S):
            bad(where, f"gateway: TELEGRAM_BOT_TOKEN must be ${{TELEGRAM_BOT_TOKEN:?<message>}} (got {tok!r})")
        named = set((model.get("volumes") or {}).keys())
        for var in ("GATEWAY_STATE_FILE", "GATEWAY_PREFS_FILE"):
            p = env.get(var) or ""
            on = [x for x in mounts(g, model.get("volumes")) if p.startswith(str(x[1]).rstrip("/") + "/")]
            if not on or on[-1][3] != "volume" or on[-1][0] not in named or on[-1][2]:
                bad(where, f"gateway: {var} {p!r} must be on a writable named volume (kept across re-creation)")
        if not g.get("container_name") or int((g.get("deploy") or {}).get("replicas", 1)) != 1 or "scale" in g:
            bad(where, "gateway: one getUpdates consumer: a fixed container_name, no replicas/scale")
        dep = (g.get("depends_on") or {}).get("matcher") if isinstance(g.get("depends_on"), dict) else None
        if not dep or dep.get("condition") != "service_healthy":
            bad(where, "gateway: depends_on matcher with condition service_healthy")

for where in models:
    print(f"  {where}: {len((models[where].get('services') or {}))} services valid against the Compose Specification schema")
if problems:
    print(f"\n{len(problems)} problem(s):")
    for p in problems:
        print(f"  ERROR {p}")
    sys.exit(1)
PY
  if [ -n "$docker_compose" ] && [ "$rc" = 0 ]; then
    if ! TELEGRAM_BOT_TOKEN=123456789:check-compose-dummy docker compose -f "$f" --project-directory "$root" config --quiet 2>&1 | sed 's/^/  docker compose config: /'; then
      echo "  ERROR docker compose config failed"; rc=1
    fi
  fi
  return $rc
}

if [ -n "$docker_compose" ]; then echo "check-compose: $(docker compose version)"; else
  echo "check-compose: docker compose not installed: schema and policy checks only"; fi
echo "check-compose: Compose Specification schema from check-jsonschema $CHECK_JSONSCHEMA_VERSION, jsonschema $JSONSCHEMA_VERSION"
if ! check_file "$file"; then
  echo "check-compose: FAILED"
  exit 1
fi
echo "check-compose: OK"

[ "$self_test" = 1 ] || exit 0

# ---- self-test: each mutation of a copy of compose.yaml must be caught -----------------------
echo "check-compose: self-test: every broken copy below must fail"
mutations=(
  "/^  gateway:/,\$s/^    healthcheck:/    healthcheck_:/"
  "/^  gateway:/,/^volumes:/{/^    healthcheck:/,/start_period/d}"
  "/^  matcher:/,/^  gateway:/s/restart: unless-stopped/restart: \"no\"/"
  "/^  gallery:/,/^  matcher:/s/restart: on-failure:2/restart: unless-stopped/"
  "/^  matcher:/,/^  gateway:/s/read_only: true/read_only: false/"
  "/^  gateway:/,\$s/user: \"10001:10001\"/user: \"0:0\"/"
  "/^  gallery:/,/^  matcher:/s/user: \"10001:10001\"/user: lookalike/"
  "/^  matcher:/,/^  gateway:/s/cap_drop: \[ALL\]/cap_drop: [NET_RAW]/"
  "/^  gateway:/,\$s/security_opt: \[\"no-new-privileges:true\"\]/security_opt: [\"label:disable\"]/"
  "/^  gateway:/,\$s/      - \/tmp:size=32m/      - \/run:size=32m/"
  "/^  gateway:/,\$s/          memory: 256M/          memroy: 256M/"
  "/^  matcher:/,/^  gateway:/{/^          memory: 768M/d}"
  "s/TELEGRAM_BOT_TOKEN: \${TELEGRAM_BOT_TOKEN:?[^}]*}/TELEGRAM_BOT_TOKEN: \${TELEGRAM_BOT_TOKEN:-}/"
  "/^  gateway:/,\$s#GATEWAY_STATE_FILE: /var/lib/lookalike-gateway/state.json#GATEWAY_STATE_FILE: /tmp/state.json#"
  "s/condition: service_healthy/condition: service_started/"
  "s/LOOKALIKE_WORKERS: \"2\"/LOOKALIKE_WORKERS: \"4\"/"
  "s#:/var/lib/lookalike/gallery:ro#:/var/lib/lookalike/gallery#"
  "/^  matcher:/,/^  gateway:/s#\"exec 3<>/dev/tcp/127.0.0.1/9090[^\"]*\"#\"curl -fsS http://127.0.0.1:9090/healthz\"#"
  "s/^    container_name: lookalike-gateway/    hostname: lookalike-gateway/"
  "s/condition: service_completed_successfully/condition: service_started/"
  "/^  gateway:/,\$s/GATEWAY_MODE: polling/GATEWAY_MODE: webhook/"
)
failed=0
for expr in "${mutations[@]}"; do
  copy="$(mktemp -d)"
  cp "$file" "$copy/compose.yaml"
  sed -i "$expr" "$copy/compose.yaml"
  if cmp -s "$file" "$copy/compose.yaml"; then
    echo "  self-test: mutation did not apply: $expr"; failed=1
  elif out="$(check_file "$copy/compose.yaml" 2>&1)"; then
    echo "  self-test: NOT caught: $expr"; failed=1
  else
    echo "  self-test: caught  $expr -> $(grep -m1 -E 'ERROR' <<<"$out" | sed 's/^ *//' | cut -c1-150)"
  fi
  rm -rf "$copy"
done
if [ "$failed" != 0 ]; then echo "check-compose: self-test FAILED"; exit 1; fi
echo "check-compose: self-test OK (${#mutations[@]} mutations caught)"
