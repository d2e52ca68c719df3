#!/usr/bin/env bash
# Checks that the Dockerfile's runtime stages install every Debian package whose shared
# libraries the built binaries load.
#
#   scripts/check-runtime-libs.sh                       # default binaries, ./Dockerfile
#   scripts/check-runtime-libs.sh matcher=PATH gateway=PATH [--dockerfile PATH]
#
# For each binary: `ldd` lists the shared libraries, `dpkg -S` maps each to the package that
# ships it (following symlinks and /etc/alternatives), and the package must be installed in
# the runtime stage: listed on the `apt-get install` line under the marker comment
# "# check-runtime-libs: <service>" in the Dockerfile, pulled in by one of those (Depends /
# Pre-Depends, resolved against this machine's dpkg database), or part of the
# debian:bookworm-slim base (Essential / Priority: required packages, apt, and their
# dependencies). Run it on Debian 12 (the runtime image's release), after cargo build.
#
# Exit status: 0 all covered, 1 a binary is missing (not built, or not where it was named) /
# a library is not covered / cannot be resolved / the Dockerfile has no marker, 2 usage error.
# Nothing is skipped: a check that verified nothing must not look like one that passed.
# Libraries opened with dlopen() are invisible to ldd and are not checked.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dockerfile="$root/Dockerfile"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
declare -A bin=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dockerfile) dockerfile="$2"; shift 2 ;;
    --dockerfile=*) dockerfile="${1#*=}"; shift ;;
    matcher=*|gateway=*) bin[${1%%=*}]="${1#*=}"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "check-runtime-libs: unknown argument: $1" >&2; exit 2 ;;
  esac
done
pick() { # first existing file among the arguments, else the first argument
  for f in "$@"; do [ -f "$f" ] && { echo "$f"; return; }; done; echo "$1"
}
: "${bin[matcher]:=$(pick "$target_dir/release/matcher" "$target_dir/debug/matcher")}"
: "${bin[gateway]:=$(pick "$target_dir/release/tg-gateway" "$target_dir/debug/tg-gateway")}"

for tool in ldd dpkg-query python3; do
  command -v "$tool" >/dev/null || { echo "check-runtime-libs: ERROR: '$tool' not found (Debian host needed)" >&2; exit 1; }
done

exec python3 - "$dockerfile" "matcher=${bin[matcher]}" "gateway=${bin[gateway]}" <<'PY'
import os, re, subprocess, sys

dockerfile = sys.argv[1]
binaries = dict(a.split("=", 1) for a in sys.argv[2:])
errors = []

def err(msg):
    errors.append(msg)
    print(f"  ERROR: {msg}")

# ---- Dockerfile: the package list under each marker --------------------------------------
def marked_packages(path):
    """{service: [packages]} from the RUN instruction following '# check-runtime-libs: NAME'."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out, i = {}, 0
    while i < len(lines):
        m = re.match(r"\s*#\s*check-runtime-libs:\s*([\w.-]+)\s*$", lines[i])
        i += 1
        if not m:
            continue
        name = m.group(1)
        while i < len(lines) and (lines[i].strip().startswith("#") or not lines[i].strip()):
            i += 1
        if i >= len(lines) or not re.match(r"\s*RUN\s", lines[i]):
            raise SystemExit(f"check-runtime-libs: ERROR: marker '{name}' in {path} is not followed by a RUN instruction")
        text = ""
        while i < len(lines):
            line = lines[i]; i += 1
            if line.strip().startswith("#"):
                continue
            if line.rstrip().endswith("\\"):
                text += line.rstrip()[:-1] + " "
            else:
                text += line
                break
        pkgs = []
        for seg in re.split(r"&&|;|\|\|", text):
            toks = seg.split()
            for j in range(len(toks) - 1):
                if toks[j] in ("apt-get", "apt") and toks[j + 1] == "install":
                    pkgs += [t.split("=")[0] for t in toks[j + 2:] if not t.startswith("-")]
        if not pkgs:
            raise SystemExit(f"check-runtime-libs: ERROR: no 'apt-get install PACKAGES' in the RUN after marker '{name}' in {path}")
        out[name] = pkgs
    return out

# ---- dpkg database -------------------------------------------------------------------------
def read_status():
    pkgs, cur, key = {}, {}, None
    def flush():
        if cur.get("Package") and "installed" in cur.get("Status", "").split():
            pkgs[cur["Package"]] = dict(cur)
    with open("/var/lib/dpkg/status", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                flush(); cur = {}; key = None
            elif line[0] in " \t":
                if key:
                    cur[key] += " " + line.strip()
            else:
                key, _, val = line.partition(":")
                cur[key] = val.strip()
        flush()
    return pkgs

status = read_status()
provides = {}
for name, p in status.items():
    for alt in filter(None, (s.strip() for s in p.get("Provides", "").split(","))):
        provides.setdefault(alt.split()[0].split(":")[0], set()).add(name)

def dep_groups(name):
    p = status.get(name, {})
    deps = ", ".join(filter(None, [p.get("Pre-Depends", ""), p.get("Depends", "")]))
    for group in filter(None, (g.strip() for g in deps.split(","))):
        yield [a.strip().split()[0].split(":")[0] for a in group.split("|")]

def closure(roots):
    """Packages that apt would install for roots (alternatives: one already chosen, else the first installed here)."""
    have = set()
    def satisfied(alt):
        return alt in have or bool(provides.get(alt, set()) & have)
    todo = [r for r in roots]
    have.update(roots)
    while todo:
        name = todo.pop()
        for group in dep_groups(name):
            if any(satisfied(a) for a in group):
                continue
            for a in group:
                cand = [a] if a in status else sorted(provides.get(a, ()))
                if cand:
                    have.add(cand[0]); todo.append(cand[0]); break
    return have

base_roots = {n for n, p in status.items()
              if p.get("Essential") == "yes" or p.get("Priority") == "required"} | ({"apt"} & status.keys())
base = closure(base_roots)

# ---- library -> package ----------------------------------------------------------------------
def usrmerge_variants(path):
    v = {path}
    for a, b in (("/usr/lib/", "/lib/"), ("/usr/lib64/", "/lib64/")):
        if path.startswith(a):
            v.add(b + path[len(a):])
        elif path.startswith(b):
            v.add(a + path[len(b):])
    return v

def dpkg_owner(path):
    for cand in sorted(usrmerge_variants(path)):
        r = subprocess.run(["dpkg-query", "-S", cand], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith("diversion by"):
                continue
            owners, _, p = line.rpartition(": ")
            if p.strip() == cand and owners:
                return {o.strip().split(":")[0] for o in owners.split(",")}
    return set()

def providers(path):
    """Packages any of which satisfies this library (several when it is an alternatives link)."""
    owners = dpkg_owner(path)
    if owners:
        return owners, None
    # Walk the symlink chain; /etc/alternatives/NAME -> any registered candidate will do.
    seen, p = set(), path
    while os.path.islink(p) and p not in seen:
        seen.add(p)
        t = os.readlink(p)
        t = t if t.startswith("/") else os.path.normpath(os.path.join(os.path.dirname(p), t))
        if t.startswith("/etc/alternatives/"):
            alt = os.path.basename(t)
            r = subprocess.run(["update-alternatives", "--list", alt], capture_output=True, text=True)
            pk = set()
            for cand in r.stdout.split():
                pk |= dpkg_owner(os.path.realpath(cand)) or dpkg_owner(cand)
            if pk:
                return pk, alt
        owners = dpkg_owner(t)
        if owners:
            return owners, None
        p = t
    return dpkg_owner(os.path.realpath(path)), None

def ldd(path):
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    out = r.stdout + r.stderr
    if "not a dynamic executable" in out or "statically linked" in out:
        return [], []
    if r.returncode != 0:
        raise SystemExit(f"check-runtime-libs: ERROR: ldd {path} failed:\n{out}")
    libs, missing = [], []
    for line in r.stdout.splitlines():
        line = line.strip()
        m = re.match(r"(\S+)\s+=>\s+not found", line)
        if m:
            missing.append(m.group(1)); continue
        m = re.match(r"(\S+)\s+=>\s+(/\S+)\s+\(", line) or re.match(r"((/\S+))\s+\(", line)
        if m:
            libs.append((os.path.basename(m.group(1)), m.group(2)))
    return libs, missing

# ---- main ------------------------------------------------------------------------------------
osr = {}
if os.path.exists("/etc/os-release"):
    for line in open("/etc/os-release", encoding="utf-8"):
        k, _, v = line.strip().partition("=")
        osr[k] = v.strip('"')
if osr.get("VERSION_CODENAME") != "bookworm":
    print(f"check-runtime-libs: WARNING: this host is {osr.get('PRETTY_NAME', 'unknown')}, the runtime image is "
          "Debian 12 (bookworm): package names may differ")

stages = marked_packages(dockerfile)
checked = 0
for svc, path in binaries.items():
    print(f"== {svc}: {path}")
    if svc not in stages:
        err(f"{dockerfile} has no '# check-runtime-libs: {svc}' marker above the {svc} stage's apt-get install")
        continue
    if not os.path.isfile(path):
        err(f"{svc}: binary not found at {path}; build it first (cargo build -p "
            f"{'lookalike-matcher' if svc == 'matcher' else 'tg-gateway'}) or pass {svc}=PATH")
        continue
    checked += 1
    listed = stages[svc]
    unknown = [p for p in listed if p not in status]
    if unknown:
        print(f"  WARNING: not installed on this host, their dependencies cannot be expanded: {' '.join(unknown)}")
    from_list = closure(set(listed) & status.keys()) | set(listed)
    print(f"  runtime stage installs: {' '.join(listed)} (+{len(from_list) - len(listed)} dependencies, +base image)")
    libs, missing = ldd(path)
    for soname in missing:
        err(f"{svc}: {soname} is not found on this host (ldd: not found); cannot check it")
    if not libs and not missing:
        print("  statically linked: nothing to install")
    used = set()
    for soname, libpath in libs:
        pk, alt = providers(libpath)
        if not pk:
            err(f"{svc}: {soname} ({libpath}) belongs to no Debian package; it cannot be installed with apt")
            continue
        how = None
        for name in sorted(pk):
            if name in listed:
                how = f"listed ({name})"
            elif name in from_list:
                how = how or f"dependency of the list ({name})"
            elif name in base:
                how = how or f"base image ({name})"
        used |= pk
        via = f" [alternative {alt}]" if alt else ""
        if how:
            print(f"  ok   {soname:28} {how}{via}")
        else:
            err(f"{svc}: {soname} ({libpath}) comes from package {' or '.join(sorted(pk))}{via}, which the {svc} "
                f"runtime stage does not install: add it to the apt-get install line under "
                f"'# check-runtime-libs: {svc}' in {dockerfile}")
    extra = [p for p in listed if p not in used and p != "ca-certificates"]
    if extra and libs:
        print(f"  note: listed but no library of the binary comes from it directly: {' '.join(extra)}")

if errors:
    print(f"\ncheck-runtime-libs: FAILED: {len(errors)} problem(s):")
    for e in errors:
        print(f"  - {e}")
    sys.exit(1)
print(f"\ncheck-runtime-libs: OK ({checked} binar{'y' if checked == 1 else 'ies'} checked)")
PY
