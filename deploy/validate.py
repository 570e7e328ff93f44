"""Checks deploy/ against Kubernetes and against the services' code. Run through deploy/validate.

Checks, per overlay (deploy/k8s/overlays/*), on what `kubectl kustomize` renders:
  schema     every object against the Kubernetes 1.32 OpenAPI schemas (kubernetes-validate,
             strict: unknown fields fail)
  crds       custom resources without a schema there (Gateway, HTTPRoute, ServiceMonitor,
             PodMonitor, ExternalSecret, CloudNativePG Cluster), structurally; the output says so
  workloads  probes on /healthz and /readyz, resources, non-root, read-only root filesystem, no
             capabilities, grace period longer than preStop + SHUTDOWN_TIMEOUT, selectors that
             select, HPA/PDB/Service/ServiceMonitor/route targets that exist, pinned images; the
             migrate Job named after its image's tag, with no ConfigMap in its pod template
  config     every ConfigMap a workload uses is generated (name suffix = kustomize hash of data)
  env        every variable a container gets is in docs/configuration.md's table and read by that
             service; every variable the service needs in production is set
  egress     the port of LIVEKIT_URL is open in the egress NetworkPolicies of the pods reading it
  secrets    with External Secrets (prod): every Secret key a workload references is produced by
             an ExternalSecret or the CloudNativePG cluster, from the overlay's ClusterSecretStore
  nats       the overlay's nats-values.yaml: keys of the official chart (deploy/k8s/charts), a
             cluster with JetStream whose size equals EVENTS_STREAM_REPLICAS, NATS_URL pointing at
             its client Service
  routes     every path of every service's OpenAPI document (services/*/tests/snapshots) reaches
             that service through the gateway, and the public path prefixes go where they should
  release    two renders with different image tags name the migrate Job differently
And once: prod with components/livekit-self-hosted and a LiveKit on 7880 opens that port; the
Grafana dashboard queries only metrics the code registers; the Dockerfile and Railway configs build
what CI builds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.32.0"
SERVICES = ["video", "telephony", "signaling", "monitoring"]
OPERATIONAL = {"/healthz", "/readyz"}
# The public routing table: prefix -> service. `/socket.io` is not in any OpenAPI document.
PREFIXES = {
    "/calls": "video",
    "/webhooks/livekit": "video",
    "/api/livekit": "video",
    "/api/calls": "telephony",
    "/api/numbers": "telephony",
    "/api/voice": "telephony",
    "/webhook/voice": "telephony",
    "/video-call": "signaling",
    "/socket.io": "signaling",
    "/monitoring": "monitoring",
}
# The `process` collector of the prometheus crate.
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
}


def die(message: str) -> None:
    print(f"deploy/validate: {message}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Inputs


def render(overlay: Path) -> list[dict]:
    try:
        out = subprocess.run(
            ["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True
        ).stdout
    except subprocess.CalledProcessError as error:
        die(f"kubectl kustomize {overlay} failed:\n{error.stderr}")
    return [doc for doc in yaml.safe_load_all(out) if doc]


def readme_table() -> dict[str, set[str] | None]:
    """Variable -> the services that read it (None: every service and `switchboard`)."""
    # The table's rows are the page's only lines starting with "| `".
    section = (ROOT / "docs" / "configuration.md").read_text()
    scopes = {
        "Video, monitoring:": {"video", "monitoring"},
        "Video:": {"video"},
        "Telephony:": {"telephony"},
        "Signaling:": {"signaling"},
        "Video and signaling:": {"video", "signaling"},
        "Monitoring:": {"monitoring"},
        "`switchboard up`:": {"up"},
        "Tests:": {"tests"},
        "Benchmark only": {"bench"},
    }
    table: dict[str, set[str] | None] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.split("|")]
        names = re.findall(r"`([A-Z0-9_]+)`", cells[1])
        meaning = cells[3]
        scope = None
        for prefix, services in scopes.items():
            if meaning.startswith(prefix):
                scope = services
                break
        for name in names:
            table[name] = scope
    if "DATABASE_URL" not in table:
        die("cannot read the table of docs/configuration.md")
    return table


def required_in_production(table: dict[str, set[str] | None]) -> dict[str, list[list[str]]]:
    """Per service, alternatives of variables that must be set (any one of each list)."""
    # The table's rows are the page's only lines starting with "| `".
    section = (ROOT / "docs" / "configuration.md").read_text()
    required: dict[str, list[list[str]]] = {
        s: [["DATABASE_URL"], ["NATS_URL"], ["APP_ENV"], ["JWT_SECRET", "JWT_PUBLIC_KEY_PEM"]]
        for s in SERVICES
    }
    for line in section.splitlines():
        if not line.startswith("| `") or "required in production" not in line.lower():
            continue
        for name in re.findall(r"`([A-Z0-9_]+)`", line.split("|")[1]):
            if name.startswith("JWT_"):
                continue
            for service in table.get(name) or SERVICES:
                if service in SERVICES:
                    required[service].append([name])
    return required


def openapi_paths() -> dict[str, list[str]]:
    paths = {}
    for service in SERVICES:
        snaps = list((ROOT / "services" / service / "tests" / "snapshots").glob("openapi*.snap"))
        if not snaps:
            die(f"no OpenAPI snapshot for {service}")
        body = snaps[0].read_text().split("---", 2)[2]
        paths[service] = sorted(json.loads(body)["paths"])
    return paths


def code_metrics() -> set[str]:
    names = set()
    for top in ("crates", "services"):
        for path in (ROOT / top).glob("*/src/**/*.rs"):
            text = path.read_text().split("#[cfg(test)]", 1)[0]
            names.update(re.findall(r'"(sb_[a-z0-9_]+)"', text))
    return names


# ---------------------------------------------------------------------------------------------
# Helpers over rendered objects


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_spec(obj: dict) -> dict:
    return obj.get("spec", {}).get("template", {}).get("spec", {})


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def duration_seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", value.strip())
    if not m:
        raise ValueError(value)
    n, unit = int(m.group(1)), m.group(2) or "ms"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def configmap_data(objs: list[dict], name: str) -> dict | None:
    for cm in by_kind(objs, "ConfigMap"):
        if cm["metadata"]["name"] == name:
            return cm.get("data") or {}
    return None


GENERATED = re.compile(r"(.+)-([2456789bcdfghkmt]{10})")


def generated(objs: list[dict], base: str) -> dict | None:
    """The ConfigMap kustomize generated as `base` (named `base-<hash>`), or one named `base`."""
    for cm in by_kind(objs, "ConfigMap"):
        name = cm["metadata"]["name"]
        m = GENERATED.fullmatch(name)
        if name == base or (m and m.group(1) == base):
            return cm
    return None


def kustomize_hash(cm: dict) -> str:
    """The suffix kustomize (5.x) gives a generated ConfigMap: sha256 of its JSON (kind, empty name,
    data) in Go's encoding (sorted keys, HTML characters escaped), 10 hex digits with 0, 1, 3, a, e
    replaced by g, h, k, m, t."""
    doc: dict = {"kind": "ConfigMap", "name": "", "data": cm.get("data") or {}}
    if cm.get("binaryData"):
        doc["binaryData"] = cm["binaryData"]
    if cm.get("immutable"):
        doc["immutable"] = True
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return hashlib.sha256(text.encode()).hexdigest()[:10].translate(str.maketrans("013ae", "ghkmt"))


def configmap_refs(pod: dict) -> list[str]:
    refs = []
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        refs += [s["configMapRef"]["name"] for s in c.get("envFrom", []) if "configMapRef" in s]
        refs += [e["valueFrom"]["configMapKeyRef"]["name"] for e in c.get("env", [])
                 if "configMapKeyRef" in e.get("valueFrom", {})]
    for v in pod.get("volumes", []):
        if "configMap" in v:
            refs.append(v["configMap"]["name"])
        refs += [s["configMap"]["name"] for s in v.get("projected", {}).get("sources", []) if "configMap" in s]
    return refs


# The keys of the Secret CloudNativePG generates for a cluster's application user (`<cluster>-app`).
CNPG_APP_KEYS = {"username", "user", "password", "dbname", "host", "port", "pgpass", "uri", "jdbc-uri",
                 "fqdn-uri", "fqdn-jdbc-uri"}


def cnpg_app_secrets(objs: list[dict]) -> dict[str, str]:
    """Secret name -> the CloudNativePG Cluster that generates it."""
    out = {}
    for c in objs:
        if c.get("kind") == "Cluster" and c.get("apiVersion", "").startswith("postgresql.cnpg.io/"):
            initdb = c.get("spec", {}).get("bootstrap", {}).get("initdb", {})
            if "secret" not in initdb:
                out[f"{c['metadata']['name']}-app"] = c["metadata"]["name"]
    return out


def workload_containers(objs: list[dict]) -> list[tuple[dict, dict]]:
    out = []
    for w in objs:
        if w.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            pod = pod_spec(w)
            out += [(w, c) for c in pod.get("initContainers", []) + pod.get("containers", [])]
    return out


def container_env(objs: list[dict], container: dict) -> tuple[dict[str, str | None], list[str]]:
    """The variables a container gets (value, or None for a secret) and errors on the way."""
    env: dict[str, str | None] = {}
    errors = []
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            ref = source["configMapRef"]["name"]
            data = configmap_data(objs, ref)
            if data is None:
                errors.append(f"envFrom names ConfigMap {ref}, which is not rendered")
                continue
            env.update(data)
        else:
            errors.append("envFrom other than a ConfigMap: its variable names cannot be checked")
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            cnpg = ref.get("name") in cnpg_app_secrets(objs)
            if cnpg and var["name"] == "DATABASE_URL":
                if ref.get("key") not in ("uri", "fqdn-uri"):
                    errors.append(f"DATABASE_URL comes from key {ref.get('key')} of {ref.get('name')}, not its connection URI (uri)")
            elif ref.get("key") != var["name"]:
                errors.append(f"{var['name']} comes from key {ref.get('key')}: keep key = name")
            env[var["name"]] = None if not ref.get("optional") else "<optional secret>"
        else:
            env[var["name"]] = var.get("value", "")
    return env, errors


# ---------------------------------------------------------------------------------------------
# Checks: each returns a list of error strings


# Custom resources kubernetes-validate has no schema for, checked structurally (check_crds).
STRUCTURAL = {"Gateway", "HTTPRoute", "ServiceMonitor", "PodMonitor", "ExternalSecret", "Cluster"}


def check_schema(objs: list[dict], notes: list[str], overlay: str) -> list[str]:
    errors = []
    unchecked = set()
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.add(obj.get("kind"))
        except kubernetes_validate.ValidationError as error:
            first = str(error).splitlines()[0]
            errors.append(f"{name_of(obj)}: {first}")
    unknown = unchecked - STRUCTURAL
    for kind in sorted(unknown):
        errors.append(f"{kind}: no schema and no structural check")
    if unchecked:
        notes.append(
            f"{overlay}: no Kubernetes schema for {', '.join(sorted(unchecked))} (CRDs): checked structurally"
        )
    return errors


def check_crds(objs: list[dict]) -> list[str]:
    """Structural checks of the CRDs kubernetes-validate has no schema for."""
    errors = []
    services = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    gateways = {g["metadata"]["name"]: g for g in by_kind(objs, "Gateway")}
    for gw in gateways.values():
        spec = gw.get("spec", {})
        if gw.get("apiVersion") != "gateway.networking.k8s.io/v1":
            errors.append(f"{name_of(gw)}: apiVersion must be gateway.networking.k8s.io/v1")
        if not spec.get("gatewayClassName") or not spec.get("listeners"):
            errors.append(f"{name_of(gw)}: needs gatewayClassName and listeners")
        for listener in spec.get("listeners", []):
            for key in ("name", "protocol", "port"):
                if key not in listener:
                    errors.append(f"{name_of(gw)}: listener without {key}")
    for route in by_kind(objs, "HTTPRoute"):
        spec = route.get("spec", {})
        if route.get("apiVersion") != "gateway.networking.k8s.io/v1":
            errors.append(f"{name_of(route)}: apiVersion must be gateway.networking.k8s.io/v1")
        for parent in spec.get("parentRefs", []) or [{}]:
            gw = gateways.get(parent.get("name"))
            if gw is None:
                errors.append(f"{name_of(route)}: parentRef {parent.get('name')} is no Gateway")
            elif "sectionName" in parent and parent["sectionName"] not in {
                l["name"] for l in gw["spec"].get("listeners", [])
            }:
                errors.append(f"{name_of(route)}: no listener {parent['sectionName']}")
        for rule in spec.get("rules", []):
            for match in rule.get("matches", []):
                path = match.get("path", {})
                if path.get("type") not in ("PathPrefix", "Exact") or not str(
                    path.get("value", "")
                ).startswith("/"):
                    errors.append(f"{name_of(route)}: match {match} is not a path match")
            for ref in rule.get("backendRefs", []):
                svc = services.get(ref.get("name"))
                if svc is None:
                    errors.append(f"{name_of(route)}: backend {ref.get('name')} is no Service")
                elif ref.get("port") not in [p["port"] for p in svc["spec"]["ports"]]:
                    errors.append(f"{name_of(route)}: Service {ref['name']} has no port {ref.get('port')}")
            for f in rule.get("filters", []):
                if f.get("type") != "URLRewrite" or "urlRewrite" not in f:
                    errors.append(f"{name_of(route)}: unexpected filter {f}")
    for sm in by_kind(objs, "ServiceMonitor"):
        spec = sm.get("spec", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        matched = [s for s in services.values() if selects(selector, s["metadata"].get("labels", {}))]
        if len(matched) != len(SERVICES):
            errors.append(f"{name_of(sm)}: selects {len(matched)} Services, not {len(SERVICES)}")
        for endpoint in spec.get("endpoints", []):
            for svc in matched:
                if endpoint.get("port") not in [p.get("name") for p in svc["spec"]["ports"]]:
                    errors.append(f"{name_of(sm)}: Service {svc['metadata']['name']} has no port {endpoint.get('port')}")
            if endpoint.get("path") != "/metrics":
                errors.append(f"{name_of(sm)}: scrape path must be /metrics")
    return errors + check_operator_crds(objs)


def check_security(obj: dict, container: dict) -> list[str]:
    errors = []
    where = f"{name_of(obj)} container {container.get('name')}"
    sc = container.get("securityContext", {})
    pod_sc = pod_spec(obj).get("securityContext", {})
    if sc.get("readOnlyRootFilesystem") is not True:
        errors.append(f"{where}: readOnlyRootFilesystem must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        errors.append(f"{where}: allowPrivilegeEscalation must be false")
    if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
        errors.append(f"{where}: runAsNonRoot must be true")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        errors.append(f"{where}: capabilities must drop ALL")
    resources = container.get("resources", {})
    if not {"cpu", "memory"} <= set(resources.get("requests", {})) or "memory" not in resources.get(
        "limits", {}
    ):
        errors.append(f"{where}: needs cpu+memory requests and a memory limit")
    return errors


def check_workloads(objs: list[dict], overlay: str) -> list[str]:
    errors = []
    deployments = by_kind(objs, "Deployment")
    shared = (generated(objs, "switchboard-shared") or {}).get("data") or {}
    names = {d["metadata"]["name"] for d in deployments}
    if names != set(SERVICES):
        errors.append(f"Deployments {sorted(names)} are not the services {SERVICES}")
    for d in deployments:
        spec = d["spec"]
        template_labels = spec["template"]["metadata"].get("labels", {})
        if not selects(spec["selector"].get("matchLabels", {}), template_labels):
            errors.append(f"{name_of(d)}: selector does not select its own pods")
        pod = pod_spec(d)
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            errors += check_security(d, c)
            image = c.get("image", "")
            if overlay == "prod" and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
                errors.append(f"{name_of(d)}: image {image} is not pinned")
        main = pod["containers"][0]
        probes = {
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}
        for probe, path in probes.items():
            get = main.get(probe, {}).get("httpGet", {})
            if get.get("path") != path:
                errors.append(f"{name_of(d)}: {probe} must GET {path}")
            if get.get("port") not in ports and get.get("port") not in ports.values():
                errors.append(f"{name_of(d)}: {probe} port {get.get('port')} is not a container port")
        env, _ = container_env(objs, main)
        if str(env.get("PORT")) not in [str(p) for p in ports.values()]:
            errors.append(f"{name_of(d)}: PORT {env.get('PORT')} is not the container port {ports}")
        try:
            drain = duration_seconds(env.get("SHUTDOWN_TIMEOUT") or shared.get("SHUTDOWN_TIMEOUT") or "20s")
        except ValueError:
            errors.append(f"{name_of(d)}: SHUTDOWN_TIMEOUT is not a duration")
            drain = 0
        pre_stop = main.get("lifecycle", {}).get("preStop", {})
        sleep = 0
        if "exec" in pre_stop:
            cmd = pre_stop["exec"]["command"]
            sleep = int(cmd[1]) if cmd[0] == "sleep" else 0
        elif "sleep" in pre_stop:
            sleep = int(pre_stop["sleep"]["seconds"])
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= drain + sleep:
            errors.append(
                f"{name_of(d)}: terminationGracePeriodSeconds {grace} must exceed preStop {sleep}s + SHUTDOWN_TIMEOUT {drain}s"
            )
        if not any(selects(p["spec"]["selector"].get("matchLabels", {}), template_labels) for p in by_kind(objs, "PodDisruptionBudget")):
            errors.append(f"{name_of(d)}: no PodDisruptionBudget")
        if not any(
            h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"]}
            for h in by_kind(objs, "HorizontalPodAutoscaler")
        ):
            errors.append(f"{name_of(d)}: no HorizontalPodAutoscaler")
        if "replicas" in spec:
            errors.append(f"{name_of(d)}: replicas is set, but the HorizontalPodAutoscaler owns it")
    for svc in by_kind(objs, "Service"):
        if not any(selects(svc["spec"].get("selector", {}), d["spec"]["template"]["metadata"].get("labels", {})) for d in deployments):
            errors.append(f"{name_of(svc)}: selects no Deployment's pods")
    for h in by_kind(objs, "HorizontalPodAutoscaler"):
        if h["spec"]["scaleTargetRef"]["name"] not in names:
            errors.append(f"{name_of(h)}: scales a Deployment that does not exist")
    jobs = by_kind(objs, "Job")
    migrate = [j for j in jobs if pod_spec(j)["containers"][0].get("command", [])[-1:] == ["migrate"]]
    if len(migrate) != 1:
        errors.append("need exactly one Job running `switchboard migrate`")
    for j in jobs:
        for c in pod_spec(j)["containers"]:
            errors += check_security(j, c)
    for j in migrate:
        # A Job's pod template is immutable: what changes it must change the Job's name too.
        name = j["metadata"]["name"]
        image = pod_spec(j)["containers"][0].get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
        if not tag or not name.endswith(f"-{tag}"):
            errors.append(f"{name_of(j)}: its name must end with its image's tag ({tag}), or the next release's apply fails on the immutable Job")
        if len(name) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
            errors.append(f"{name_of(j)}: not a valid Job name (lowercase letters, digits, '.', '-', at most 63): check the image tag")
        for ref in configmap_refs(pod_spec(j)):
            errors.append(f"{name_of(j)}: uses ConfigMap {ref}: a config change would change the immutable pod template under the same Job name")
        if "ttlSecondsAfterFinished" not in j["spec"]:
            errors.append(f"{name_of(j)}: needs ttlSecondsAfterFinished (finished Jobs are cleaned up)")
    for d in deployments:
        init = [c.get("command", []) for c in pod_spec(d).get("initContainers", [])]
        if ["/usr/local/bin/switchboard", "migrate", "--check"] not in init:
            errors.append(f"{name_of(d)}: no init container waiting for the migrations (migrate --check)")
    policies = by_kind(objs, "NetworkPolicy")
    if not any(p["spec"].get("podSelector") == {} and "Ingress" in p["spec"].get("policyTypes", []) and not p["spec"].get("ingress") for p in policies):
        errors.append("no default-deny ingress NetworkPolicy")
    for target in ("postgresql", "nats"):
        if not any(p["spec"].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == target for p in policies):
            errors.append(f"no NetworkPolicy restricting who reaches {target}")
    return errors


def check_env(objs: list[dict], table: dict, required: dict) -> list[str]:
    errors = []
    workloads = []
    for d in by_kind(objs, "Deployment"):
        service = d["metadata"]["labels"].get("app.kubernetes.io/name")
        pod = pod_spec(d)
        workloads += [(d, c, service) for c in pod.get("containers", [])]
        workloads += [(d, c, "switchboard") for c in pod.get("initContainers", [])]
    for j in by_kind(objs, "Job"):
        workloads += [(j, c, "switchboard") for c in pod_spec(j)["containers"]]
    for obj, container, service in workloads:
        where = f"{name_of(obj)} container {container['name']}"
        env, problems = container_env(objs, container)
        errors += [f"{where}: {p}" for p in problems]
        for name in env:
            if name not in table:
                errors.append(f"{where}: {name} is not in docs/configuration.md's table")
            elif table[name] is not None and service not in table[name]:
                errors.append(f"{where}: {name} is read by {sorted(table[name])}, not {service}")
        if service in required:
            for alternatives in required[service]:
                if not any(name in env and env[name] != "<optional secret>" for name in alternatives):
                    errors.append(f"{where}: {' or '.join(alternatives)} must be set (required in production)")
            if env.get("APP_ENV") not in ("production", "prod", "staging"):
                errors.append(f"{where}: APP_ENV must be production (got {env.get('APP_ENV')})")
    return errors


def gateway_rules(objs: list[dict]) -> list[dict]:
    """Every routing rule, as {kind, match(path) -> rewritten path | None, length, service, name}."""
    rules = []
    services = {
        s["metadata"]["name"]: {p.get("name") for p in s["spec"]["ports"]} | {p["port"] for p in s["spec"]["ports"]}
        for s in by_kind(objs, "Service")
    }

    def prefix_matcher(prefix: str, replace: str | None):
        prefix = prefix.rstrip("/") or "/"

        def match(path: str):
            if path == prefix or path.startswith(prefix + "/") or prefix == "/":
                return (replace + path[len(prefix):]) if replace is not None else path
            return None

        return match

    def regex_matcher(pattern: str, target: str | None):
        compiled = re.compile(pattern)

        def match(path: str):
            m = compiled.match(path)
            if not m:
                return None
            if target is None:
                return path
            return re.sub(r"\$(\d)", lambda g: m.group(int(g.group(1))) or "", target)

        return match

    for route in by_kind(objs, "HTTPRoute"):
        for rule in route["spec"].get("rules", []):
            replace = None
            for f in rule.get("filters", []):
                rewrite = f.get("urlRewrite", {}).get("path", {})
                if rewrite.get("type") == "ReplacePrefixMatch":
                    replace = rewrite["replacePrefixMatch"]
            backends = [b["name"] for b in rule.get("backendRefs", [])]
            for m in rule.get("matches", []):
                value = m["path"]["value"]
                rules.append(dict(
                    kind="HTTPRoute", name=name_of(route), length=len(value), service=backends[0] if backends else None,
                    match=prefix_matcher(value, replace), rule=rule,
                ))
    for ing in by_kind(objs, "Ingress"):
        annotations = ing["metadata"].get("annotations", {})
        target = annotations.get("nginx.ingress.kubernetes.io/rewrite-target")
        regex = annotations.get("nginx.ingress.kubernetes.io/use-regex") == "true"
        for r in ing["spec"].get("rules", []):
            for p in r.get("http", {}).get("paths", []):
                backend = p["backend"]["service"]["name"]
                port = p["backend"]["service"].get("port", {})
                if backend not in services or (port.get("name") or port.get("number")) not in services[backend]:
                    rules.append(dict(kind="Ingress", name=name_of(ing), length=-1, service=None, match=lambda _: None, rule=p))
                    continue
                if regex or p["pathType"] == "ImplementationSpecific":
                    matcher = regex_matcher(p["path"], target)
                else:
                    matcher = prefix_matcher(p["path"], None)
                rules.append(dict(kind="Ingress", name=name_of(ing), length=len(p["path"]), service=backend,
                                  match=matcher, rule=p, annotations=annotations))
    return rules


def route(rules: list[dict], path: str):
    """(rule, path the backend sees) the gateway picks for `path`: the longest match wins."""
    best = None
    for r in rules:
        rewritten = r["match"](path)
        if rewritten is not None and (best is None or r["length"] > best[0]["length"]):
            best = (r, rewritten)
    return best


def check_routes(objs: list[dict], paths: dict[str, list[str]]) -> list[str]:
    errors = []
    rules = gateway_rules(objs)
    for r in rules:
        if r["service"] is None:
            errors.append(f"{r['name']}: a path goes to no Service port of the stack")
    kinds = {r["kind"] for r in rules}
    if len(kinds) != 1:
        return errors + [f"expected one routing API per overlay, found {sorted(kinds) or 'none'}"]
    for prefix, service in PREFIXES.items():
        for probe in (prefix, prefix + "/x1"):
            hit = route(rules, probe)
            if hit is None or hit[0]["service"] != service:
                errors.append(f"{probe} must go to {service}, goes to {hit[0]['service'] if hit else 'nothing'}")
    for service, service_paths in paths.items():
        for path in service_paths:
            if path in OPERATIONAL:
                continue
            concrete = re.sub(r"\{[^}]+\}", "x1", path)
            reached = False
            for external in (concrete, f"/{service}{concrete}"):
                hit = route(rules, external)
                if hit and hit[0]["service"] == service and hit[1] == concrete:
                    reached = True
                    break
            if not reached:
                errors.append(f"{service} {path}: no gateway path reaches it")
    # Signaling's long-polling needs every request of a session on one pod.
    for r in rules:
        if r["service"] != "signaling":
            continue
        if r["kind"] == "HTTPRoute" and r["rule"].get("sessionPersistence", {}).get("type") != "Cookie":
            errors.append(f"{r['name']}: signaling needs cookie sessionPersistence (long-polling)")
        if r["kind"] == "Ingress" and r["annotations"].get("nginx.ingress.kubernetes.io/affinity") != "cookie":
            errors.append(f"{r['name']}: signaling needs cookie affinity (long-polling)")
    return errors


def check_config(objs: list[dict]) -> list[str]:
    """Every ConfigMap a workload uses is generated: its name carries the hash of its data, so a
    change renames it, changes the pod template and rolls the pods."""
    errors = []
    for w in objs:
        if w.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            continue
        for ref in sorted(set(configmap_refs(pod_spec(w)))):
            cm = next((c for c in by_kind(objs, "ConfigMap") if c["metadata"]["name"] == ref), None)
            m = GENERATED.fullmatch(ref)
            if cm is None:
                errors.append(f"{name_of(w)}: ConfigMap {ref} is not rendered")
            elif not m:
                errors.append(f"{name_of(w)}: ConfigMap {ref} has no content hash in its name: changing it would not roll the pods (configMapGenerator)")
            elif m.group(2) != kustomize_hash(cm):
                errors.append(f"{name_of(w)}: ConfigMap {ref}: its suffix is not the hash of its data ({kustomize_hash(cm)})")
    return errors


# ---------------------------------------------------------------------------------------------
# NetworkPolicy egress


def matches_selector(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector ({} selects everything)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def egress_allows(objs: list[dict], labels: dict, port: int, protocol: str = "TCP") -> bool:
    """Whether the NetworkPolicies let a pod with these labels open `port` (to some destination)."""
    policies = [
        p for p in by_kind(objs, "NetworkPolicy")
        if "Egress" in p["spec"].get("policyTypes", ["Ingress"] + (["Egress"] if "egress" in p["spec"] else []))
        and matches_selector(p["spec"].get("podSelector"), labels)
    ]
    if not policies:
        return True
    for p in policies:
        for rule in p["spec"].get("egress", []) or []:
            ports = rule.get("ports")
            if not ports:
                return True
            for entry in ports:
                if entry.get("protocol", "TCP") != protocol:
                    continue
                number = entry.get("port")
                if number is None or number == port or (
                    isinstance(number, int) and number <= port <= entry.get("endPort", number)
                ):
                    return True
    return False


def url_port(url: str) -> int | None:
    parts = urllib.parse.urlsplit(url)
    try:
        if parts.port:
            return parts.port
    except ValueError:
        return None
    return {"wss": 443, "https": 443, "ws": 80, "http": 80}.get(parts.scheme)


def check_egress(objs: list[dict]) -> list[str]:
    """The LiveKit server (LIVEKIT_URL; its server API is the same host and port over http(s)) is
    reachable through the egress NetworkPolicies from every pod that reads it."""
    errors = []
    for d in by_kind(objs, "Deployment"):
        env, _ = container_env(objs, pod_spec(d)["containers"][0])
        url = env.get("LIVEKIT_URL")
        if not url:
            continue
        port = url_port(url)
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        if port is None:
            errors.append(f"{name_of(d)}: no port in LIVEKIT_URL {url} (ws, wss, http, https)")
        elif not egress_allows(objs, labels, port):
            errors.append(f"{name_of(d)}: LIVEKIT_URL {url} needs egress to TCP {port}, which no NetworkPolicy allows (components/livekit-self-hosted)")
    return errors


# ---------------------------------------------------------------------------------------------
# Secrets: External Secrets and CloudNativePG

# Fields of external-secrets.io/v1 ExternalSecret (its CRD, ESO 0.16 to 2.x) this stack may use.
ESO_FIELDS = {
    "spec": {"data", "dataFrom", "refreshInterval", "refreshPolicy", "secretStoreRef", "syncWindows", "target"},
    "spec.data[]": {"remoteRef", "secretKey", "sourceRef"},
    "spec.data[].remoteRef": {"conversionStrategy", "decodingStrategy", "key", "metadataPolicy", "nullBytePolicy",
                              "property", "version"},
    "spec.secretStoreRef": {"kind", "name"},
    "spec.target": {"creationPolicy", "deletionPolicy", "immutable", "manifest", "name", "template"},
    "spec.target.template": {"data", "engineVersion", "mergePolicy", "metadata", "templateFrom", "type"},
}
# Fields of a postgresql.cnpg.io/v1 Cluster (its CRD, CloudNativePG 1.30), for the sections used here.
CNPG_FIELDS = {
    "spec": {"affinity", "backup", "bootstrap", "certificates", "description", "enablePDB", "enableSuperuserAccess",
             "env", "envFrom", "ephemeralVolumeSource", "ephemeralVolumesSizeLimit", "externalClusters",
             "failoverDelay", "imageCatalogRef", "imageName", "imagePullPolicy", "imagePullSecrets",
             "inheritedMetadata", "instances", "livenessProbeTimeout", "logLevel", "managed", "maxSyncReplicas",
             "minSyncReplicas", "monitoring", "nodeMaintenanceWindow", "plugins", "podSecurityContext",
             "podSelectorRefs", "postgresGID", "postgresUID", "postgresql", "primaryLease", "primaryUpdateMethod",
             "primaryUpdateStrategy", "priorityClassName", "probes", "projectedVolumeTemplate", "replica",
             "replicationSlots", "resources", "schedulerName", "seccompProfile", "securityContext",
             "serviceAccountName", "serviceAccountTemplate", "smartShutdownTimeout", "startDelay", "stopDelay",
             "storage", "superuserSecret", "switchoverDelay", "tablespaces", "topologySpreadConstraints",
             "walStorage"},
    "spec.storage": {"pvcTemplate", "resizeInUseVolumes", "size", "storageClass"},
    "spec.walStorage": {"pvcTemplate", "resizeInUseVolumes", "size", "storageClass"},
    "spec.bootstrap": {"initdb", "pg_basebackup", "recovery"},
    "spec.bootstrap.initdb": {"builtinLocale", "dataChecksums", "database", "encoding", "icuLocale", "icuRules",
                              "import", "locale", "localeCType", "localeCollate", "localeProvider", "options",
                              "owner", "postInitApplicationSQL", "postInitApplicationSQLRefs", "postInitSQL",
                              "postInitSQLRefs", "postInitTemplateSQL", "postInitTemplateSQLRefs", "secret",
                              "walSegmentSize"},
    "spec.monitoring": {"customQueriesConfigMap", "customQueriesSecret", "disableDefaultQueries", "enablePodMonitor",
                        "metricsQueriesTTL", "podMonitorMetricRelabelings", "podMonitorRelabelings", "tls"},
    "spec.affinity": {"additionalPodAffinity", "additionalPodAntiAffinity", "enablePodAntiAffinity", "nodeAffinity",
                      "nodeSelector", "podAntiAffinityType", "tolerations", "topologyKey"},
    "spec.postgresql": {"enableAlterSystem", "extensions", "ldap", "parameters", "pg_hba", "pg_ident",
                        "promotionTimeout", "shared_preload_libraries", "syncReplicaElectionConstraint",
                        "synchronous"},
    "spec.resources": {"claims", "limits", "requests"},
}
STORE_PLACEHOLDER = "switchboard-store-set-by-overlay"


def unknown_fields(obj: dict, fields: dict[str, set[str]]) -> list[str]:
    errors = []

    def at(path: str):
        node: list = [obj]
        for part in path.split("."):
            step = []
            for n in node:
                key = part.removesuffix("[]")
                value = n.get(key) if isinstance(n, dict) else None
                if value is None:
                    continue
                step += value if part.endswith("[]") and isinstance(value, list) else [value]
            node = step
        return node

    for path, allowed in fields.items():
        for node in at(path):
            if not isinstance(node, dict):
                errors.append(f"{name_of(obj)}: {path} is not a map")
                continue
            for key in sorted(set(node) - allowed):
                errors.append(f"{name_of(obj)}: {path}.{key} is not a field of {obj.get('apiVersion')} {obj.get('kind')}")
    return errors


def check_operator_crds(objs: list[dict]) -> list[str]:
    """Structural checks of ExternalSecret, CloudNativePG Cluster and PodMonitor."""
    errors = []
    clusters = {c["metadata"]["name"] for c in objs if c.get("kind") == "Cluster"}
    for es in by_kind(objs, "ExternalSecret"):
        if es.get("apiVersion") != "external-secrets.io/v1":
            errors.append(f"{name_of(es)}: apiVersion must be external-secrets.io/v1 (v1beta1 is no longer served since ESO 0.17)")
        errors += unknown_fields(es, ESO_FIELDS)
        spec = es.get("spec", {})
        store = spec.get("secretStoreRef", {})
        if not store.get("name") or store.get("kind") not in ("ClusterSecretStore", "SecretStore"):
            errors.append(f"{name_of(es)}: secretStoreRef needs a name and kind ClusterSecretStore")
        for item in spec.get("data", []):
            if not item.get("secretKey") or not item.get("remoteRef", {}).get("key"):
                errors.append(f"{name_of(es)}: data entries need secretKey and remoteRef.key")
        if spec.get("dataFrom"):
            errors.append(f"{name_of(es)}: dataFrom gives keys deploy/validate cannot see: name each key in data")
        template = spec.get("target", {}).get("template")
        if template:
            keys = {item.get("secretKey") for item in spec.get("data", [])}
            for key, text in (template.get("data") or {}).items():
                for var in re.findall(r"\{\{[^}]*?\.([A-Za-z0-9_]+)[^}]*\}\}", str(text)):
                    if var not in keys:
                        errors.append(f"{name_of(es)}: template of {key} uses .{var}, which no data entry fetches")
            if template.get("templateFrom"):
                errors.append(f"{name_of(es)}: templateFrom gives keys deploy/validate cannot see")
    for c in objs:
        if c.get("kind") != "Cluster":
            continue
        if c.get("apiVersion") != "postgresql.cnpg.io/v1":
            errors.append(f"{name_of(c)}: apiVersion must be postgresql.cnpg.io/v1")
            continue
        errors += unknown_fields(c, CNPG_FIELDS)
        spec = c.get("spec", {})
        if not isinstance(spec.get("instances"), int) or spec["instances"] < 1:
            errors.append(f"{name_of(c)}: instances must be a positive integer")
        if not spec.get("storage", {}).get("size") and not spec.get("storage", {}).get("pvcTemplate"):
            errors.append(f"{name_of(c)}: storage needs a size")
        initdb = spec.get("bootstrap", {}).get("initdb")
        if not initdb or not initdb.get("database") or not initdb.get("owner"):
            errors.append(f"{name_of(c)}: bootstrap.initdb needs database and owner")
    for pm in by_kind(objs, "PodMonitor"):
        spec = pm.get("spec", {})
        if pm.get("apiVersion") != "monitoring.coreos.com/v1":
            errors.append(f"{name_of(pm)}: apiVersion must be monitoring.coreos.com/v1")
        if not spec.get("selector", {}).get("matchLabels") or not spec.get("podMetricsEndpoints"):
            errors.append(f"{name_of(pm)}: needs selector.matchLabels and podMetricsEndpoints")
        for ep in spec.get("podMetricsEndpoints", []):
            if not ep.get("port"):
                errors.append(f"{name_of(pm)}: endpoint without a port name")
        cluster = spec.get("selector", {}).get("matchLabels", {}).get("cnpg.io/cluster")
        if cluster is not None and cluster not in clusters:
            errors.append(f"{name_of(pm)}: selects the pods of cluster {cluster}, which is not rendered")
    return errors


def produced_secrets(objs: list[dict]) -> dict[str, tuple[set[str], str]]:
    """Secret name -> (its keys, what produces it), for ExternalSecrets and CloudNativePG."""
    out: dict[str, tuple[set[str], str]] = {}
    for es in by_kind(objs, "ExternalSecret"):
        spec = es.get("spec", {})
        target = spec.get("target", {})
        name = target.get("name") or es["metadata"]["name"]
        fetched = {item.get("secretKey") for item in spec.get("data", [])}
        template = target.get("template") or {}
        if template.get("data") is not None:
            keys = set(template["data"]) | (fetched if template.get("mergePolicy") == "Merge" else set())
        else:
            keys = fetched
        out[name] = (keys, name_of(es))
    for secret, cluster in cnpg_app_secrets(objs).items():
        out[secret] = (set(CNPG_APP_KEYS), f"Cluster/{cluster} (CloudNativePG)")
    return out


def check_secrets(objs: list[dict], overlay: str, notes: list[str]) -> list[str]:
    """In an overlay using External Secrets (prod), every Secret key a workload references is
    produced by an ExternalSecret, or by the CloudNativePG cluster for the database URI."""
    ess = by_kind(objs, "ExternalSecret")
    if not ess and overlay != "prod":
        notes.append(f"{overlay}: Secrets created by hand (no ExternalSecret): their keys are not checked")
        return []
    errors = []
    if not ess:
        errors.append("no ExternalSecret: production Secrets come from components/external-secrets")
    targets = [es.get("spec", {}).get("target", {}).get("name") or es["metadata"]["name"] for es in ess]
    for name in sorted({t for t in targets if targets.count(t) > 1}):
        errors.append(f"Secret {name} is produced by several ExternalSecrets")
    stores = {(es.get("spec", {}).get("secretStoreRef", {}).get("kind"), es.get("spec", {}).get("secretStoreRef", {}).get("name")) for es in ess}
    if len(stores) > 1:
        errors.append(f"the ExternalSecrets read from several stores {sorted(map(str, stores))}: the overlay names one ClusterSecretStore")
    for kind, name in stores:
        if kind != "ClusterSecretStore":
            errors.append(f"the ExternalSecrets read from a {kind}, not the overlay's ClusterSecretStore")
        if name == STORE_PLACEHOLDER:
            errors.append("the overlay does not name its ClusterSecretStore (spec.secretStoreRef.name is still the placeholder)")
    for s in by_kind(objs, "Secret"):
        errors.append(f"{name_of(s)}: Secrets are not committed; produce it with an ExternalSecret")
    produced = produced_secrets(objs)
    for w, c in workload_containers(objs):
        for var in c.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            keys, _ = produced.get(ref.get("name"), (None, None))
            if keys is None:
                errors.append(f"{name_of(w)} container {c['name']}: {var['name']} comes from Secret {ref.get('name')}, which no ExternalSecret or CloudNativePG cluster produces")
            elif ref.get("key") not in keys:
                errors.append(f"{name_of(w)} container {c['name']}: {var['name']} comes from key {ref.get('key')} of Secret {ref.get('name')}, which {produced[ref['name']][1]} does not produce")
    return errors


# ---------------------------------------------------------------------------------------------
# NATS (the official Helm chart's values, deploy/k8s/overlays/<overlay>/nats-values.yaml)

NATS_CHART_KEYS = ROOT / "deploy/k8s/charts/nats-1.3.16.keys"


def chart_keys(path: Path) -> tuple[set[str], set[str]]:
    """(key paths, key paths taking anything below them) of a chart's values."""
    leaves, open_ = set(), set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith(".*"):
            open_.add(line[:-2])
        else:
            leaves.add(line)
    return leaves, open_


def dig(values: dict, path: str, default=None):
    node = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def check_nats(objs: list[dict], values: dict | None, keys: tuple[set[str], set[str]], overlay: str,
               notes: list[str]) -> list[str]:
    if values is None:
        notes.append(f"{overlay}: no nats-values.yaml (this overlay brings its own NATS): not checked")
        return []
    errors = []
    where = f"overlays/{overlay}/nats-values.yaml"
    leaves, open_ = keys
    everything = leaves | open_

    def walk(node: dict, path: str):
        for key, value in node.items():
            p = f"{path}.{key}" if path else str(key)
            if any(p == o or p.startswith(o + ".") for o in open_):
                continue
            if p in leaves:
                if isinstance(value, dict) and value:
                    errors.append(f"{where}: {p} is a value in the chart, not a map")
            elif isinstance(value, dict) and any(k.startswith(p + ".") for k in everything):
                walk(value, p)
            else:
                errors.append(f"{where}: {p} is not a key of the chart ({NATS_CHART_KEYS.name})")

    walk(values, "")
    replicas = dig(values, "config.cluster.replicas")
    if dig(values, "config.cluster.enabled") is not True:
        errors.append(f"{where}: config.cluster.enabled must be true (a 3-node cluster)")
    if not isinstance(replicas, int) or replicas < 3:
        errors.append(f"{where}: config.cluster.replicas must be set, 3 or more (got {replicas})")
        replicas = replicas if isinstance(replicas, int) else 1
    if dig(values, "config.jetstream.enabled") is not True:
        errors.append(f"{where}: config.jetstream.enabled must be true (the services' streams)")
    if dig(values, "config.jetstream.fileStore.enabled") is False or dig(values, "config.jetstream.fileStore.pvc.enabled") is False \
            or not dig(values, "config.jetstream.fileStore.pvc.size"):
        errors.append(f"{where}: JetStream needs its file store on a volume (config.jetstream.fileStore.pvc.size)")
    spread = dig(values, "podTemplate.topologySpreadConstraints", {}) or {}
    if (spread.get("kubernetes.io/hostname") or {}).get("whenUnsatisfiable") != "DoNotSchedule":
        errors.append(f"{where}: podTemplate.topologySpreadConstraints needs kubernetes.io/hostname with DoNotSchedule (two servers on one node lose the quorum with it)")
    # The streams' replicas (EVENTS_STREAM_REPLICAS of every service) equal the servers.
    for d in by_kind(objs, "Deployment"):
        env, _ = container_env(objs, pod_spec(d)["containers"][0])
        value = env.get("EVENTS_STREAM_REPLICAS") or "1"
        if not str(value).isdigit():
            errors.append(f"{name_of(d)}: EVENTS_STREAM_REPLICAS {value} is not a number")
        elif int(value) > replicas:
            errors.append(f"{name_of(d)}: EVENTS_STREAM_REPLICAS {value} exceeds the NATS cluster's {replicas} servers (streams could not be created)")
        elif int(value) != replicas:
            errors.append(f"{name_of(d)}: EVENTS_STREAM_REPLICAS {value} is not the NATS cluster's {replicas} servers (streams would not survive losing a server)")
    # NATS_URL points at the chart's client Service.
    service = dig(values, "service.name") or values.get("fullnameOverride")
    port = dig(values, "config.nats.port", 4222)
    if not service:
        errors.append(f"{where}: set fullnameOverride so the client Service's name does not depend on the release name")
    if dig(values, "service.enabled") is False or dig(values, "service.ports.nats.enabled") is False:
        errors.append(f"{where}: the client Service (service.ports.nats) must be enabled")
    namespaces = {d["metadata"].get("namespace") for d in by_kind(objs, "Deployment")}
    hosts = {service} | {f"{service}.{ns}{suffix}" for ns in namespaces if ns for suffix in ("", ".svc", ".svc.cluster.local")}
    user = dig(values, "config.merge.authorization.user")
    produced = {}
    for es in by_kind(objs, "ExternalSecret"):
        target = es.get("spec", {}).get("target", {})
        produced[target.get("name") or es["metadata"]["name"]] = (target.get("template") or {}).get("data") or {}
    seen = set()
    for w, c in workload_containers(objs):
        for var in c.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if var["name"] != "NATS_URL" or not ref or (ref["name"], ref["key"]) in seen:
                continue
            seen.add((ref["name"], ref["key"]))
            url = produced.get(ref["name"], {}).get(ref["key"])
            if url is None:
                errors.append(f"NATS_URL (Secret {ref['name']}) is not built by an ExternalSecret template, so where it points cannot be checked")
                continue
            for one in str(url).split(","):
                parts = urllib.parse.urlsplit(re.sub(r"\{\{[^}]*\}\}", "x", one.strip()))
                try:
                    url_port_ = parts.port or 4222
                except ValueError:
                    url_port_ = None
                if parts.scheme not in ("nats", "tls") or parts.hostname not in hosts or url_port_ != port:
                    errors.append(f"NATS_URL {one.strip()} does not point at the NATS cluster's client Service {service}:{port}")
                if user and parts.username != user:
                    errors.append(f"NATS_URL {one.strip()} does not log in as {user}, the user nats-values.yaml defines")
    if not seen:
        errors.append("no workload gets NATS_URL from a Secret")
    # The servers' own Secrets come from the same store.
    secrets = produced_secrets(objs)
    for name, var in (dig(values, "container.env", {}) or {}).items():
        ref = var.get("valueFrom", {}).get("secretKeyRef") if isinstance(var, dict) else None
        if ref and ref.get("key") not in secrets.get(ref.get("name"), (set(), ""))[0]:
            errors.append(f"{where}: container.env {name} comes from Secret {ref.get('name')} key {ref.get('key')}, which no ExternalSecret produces")
    labels = {"app.kubernetes.io/name": values.get("nameOverride") or "nats", "app.kubernetes.io/component": "nats"}
    if not any("Ingress" in p["spec"].get("policyTypes", []) and matches_selector(p["spec"].get("podSelector"), labels)
               and p["spec"].get("podSelector") for p in by_kind(objs, "NetworkPolicy")):
        errors.append(f"{where}: no NetworkPolicy selects the NATS pods ({labels})")
    return errors


# ---------------------------------------------------------------------------------------------
# Renders of modified copies of deploy/k8s


def render_copy(edit) -> list[dict]:
    """Renders, in a copy of deploy/k8s that `edit(root)` may change, the overlay `edit` returns."""
    with tempfile.TemporaryDirectory(prefix="sb-validate-") as tmp:
        root = Path(tmp) / "k8s"
        shutil.copytree(ROOT / "deploy/k8s", root)
        overlay = edit(root)
        return render(overlay)


def edit_kustomization(path: Path, change) -> None:
    k = yaml.safe_load(path.read_text())
    change(k)
    path.write_text(yaml.safe_dump(k, sort_keys=False))


def check_release(overlay: str, drop_replacements: bool = False) -> list[str]:
    """Two releases (image tags) of the overlay name the migrate Job differently."""
    names = {}
    for tag in ("1.4.0", "1.4.1"):
        def edit(root: Path, tag=tag):
            def change(k):
                for image in k.get("images", []):
                    image["newTag"] = tag
                if drop_replacements:
                    k.pop("replacements", None)
            edit_kustomization(root / "overlays" / overlay / "kustomization.yaml", change)
            return root / "overlays" / overlay
        objs = render_copy(edit)
        jobs = [j["metadata"]["name"] for j in by_kind(objs, "Job")
                if pod_spec(j)["containers"][0].get("command", [])[-1:] == ["migrate"]]
        names[tag] = jobs
    if names["1.4.0"] == names["1.4.1"]:
        return [f"image tags 1.4.0 and 1.4.1 both name the migrate Job {names['1.4.0']}: the next release's apply would fail on the immutable Job"]
    return []


LIVEKIT_SELF_HOSTED = "ws://livekit.livekit.svc.cluster.local:7880"


def render_livekit_example(with_component: bool = True) -> list[dict]:
    """prod with a self-hosted LiveKit on 7880, through components/livekit-self-hosted."""
    def edit(root: Path):
        example = root / "overlays" / "livekit-example"
        example.mkdir()
        k = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["../prod"],
            "components": ["../../components/livekit-self-hosted"] if with_component else [],
            "configMapGenerator": [
                {"name": f"switchboard-{s}", "behavior": "merge", "literals": [f"LIVEKIT_URL={LIVEKIT_SELF_HOSTED}"]}
                for s in ("video", "monitoring")
            ],
        }
        (example / "kustomization.yaml").write_text(yaml.safe_dump(k, sort_keys=False))
        return example
    return render_copy(edit)


def dashboard_metrics(dashboard: dict) -> list[str]:
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "expr" and isinstance(v, str):
                    exprs.append(v)
                elif k == "query" and isinstance(v, str) and "(" in v:
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dashboard)
    return exprs


def check_dashboard(dashboard: dict, known: set[str]) -> list[str]:
    errors = []
    exprs = dashboard_metrics(dashboard)
    if not exprs:
        return ["the dashboard has no queries"]
    used = set()
    for expr in exprs:
        for name in re.findall(r"\b((?:sb|process)_[a-z0-9_]+)\b", expr):
            used.add(name)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in known and base not in known and name not in PROCESS_METRICS:
                errors.append(f"dashboard queries {name}, which no code registers")
    for needed in ("sb_http_requests_total", "sb_http_request_duration_seconds", "sb_outbox_pending",
                   "sb_outbox_publish_seconds", "sb_consumer_redeliveries_total",
                   "sb_consumer_dead_letters_total", "sb_video_active_calls",
                   "sb_telephony_active_calls", "sb_socketio_connected_sockets"):
        if not any(u == needed or re.sub(r"_(bucket|sum|count)$", "", u) == needed for u in used):
            errors.append(f"the dashboard does not show {needed}")
    if not any(u.endswith("_webhooks_total") for u in used):
        errors.append("the dashboard does not show webhook rejects")
    return errors


def check_build_configs() -> list[str]:
    errors = []
    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text()
    cargo = (ROOT / "Cargo.toml").read_text()
    rust = re.search(r'rust-version\s*=\s*"([^"]+)"', cargo)
    arg = re.search(r"ARG RUST_VERSION=(\S+)", dockerfile)
    if not rust or not arg or arg.group(1) != rust.group(1):
        errors.append(f"Dockerfile RUST_VERSION {arg and arg.group(1)} != workspace rust-version {rust and rust.group(1)}")
    if 'cargo build --release --locked -p "sb-${SERVICE}" -p switchboard' not in dockerfile:
        errors.append("Dockerfile must build with `cargo build --release --locked -p sb-$SERVICE -p switchboard`")
    if "EXPOSE 8080" not in dockerfile or "PORT=8080" not in dockerfile:
        errors.append("Dockerfile must listen on 8080 like the manifests")
    for service in SERVICES:
        manifest = (ROOT / "services" / service / "Cargo.toml").read_text()
        if f'name = "sb-{service}"' not in manifest:
            errors.append(f"services/{service} is not the package sb-{service} the Dockerfile builds")
        path = ROOT / "deploy/railway" / service / "railway.json"
        if not path.exists():
            errors.append(f"{path.relative_to(ROOT)} is missing")
            continue
        railway = json.loads(path.read_text())
        if not (ROOT / railway["build"]["dockerfilePath"]).exists():
            errors.append(f"{path.relative_to(ROOT)}: dockerfilePath does not exist")
        if f"services/{service}/**" not in railway["build"].get("watchPatterns", []):
            errors.append(f"{path.relative_to(ROOT)}: does not watch services/{service}")
        if railway["deploy"].get("healthcheckPath") not in OPERATIONAL:
            errors.append(f"{path.relative_to(ROOT)}: health check is not /readyz or /healthz")
    return errors


# ---------------------------------------------------------------------------------------------


class Context:
    def __init__(self):
        self.table = readme_table()
        self.required = required_in_production(self.table)
        self.paths = openapi_paths()
        self.metrics = code_metrics()
        self.dashboard = json.loads((ROOT / "deploy/grafana/switchboard.json").read_text())
        overlays = sorted(p for p in (ROOT / "deploy/k8s/overlays").iterdir() if p.is_dir())
        if not overlays:
            die("no overlays under deploy/k8s/overlays")
        self.rendered = {o.name: render(o) for o in overlays}
        self.nats = {
            o.name: yaml.safe_load((o / "nats-values.yaml").read_text()) if (o / "nats-values.yaml").exists() else None
            for o in overlays
        }
        self.nats_keys = chart_keys(NATS_CHART_KEYS)


def run_checks(ctx: Context, rendered: dict[str, list[dict]], dashboard: dict, notes: list[str],
               nats: dict[str, dict | None] | None = None) -> dict[str, list[str]]:
    results: dict[str, list[str]] = {}
    nats = ctx.nats if nats is None else nats
    for overlay, objs in rendered.items():
        results[f"{overlay}: schema"] = check_schema(objs, notes, overlay)
        results[f"{overlay}: crds"] = check_crds(objs)
        results[f"{overlay}: workloads"] = check_workloads(objs, overlay)
        results[f"{overlay}: config"] = check_config(objs)
        results[f"{overlay}: env"] = check_env(objs, ctx.table, ctx.required)
        results[f"{overlay}: egress"] = check_egress(objs)
        results[f"{overlay}: secrets"] = check_secrets(objs, overlay, notes)
        results[f"{overlay}: nats"] = check_nats(objs, nats.get(overlay), ctx.nats_keys, overlay, notes)
        results[f"{overlay}: routes"] = check_routes(objs, ctx.paths)
    results["grafana"] = check_dashboard(dashboard, ctx.metrics)
    results["build configs"] = check_build_configs()
    return results


def find(objs: list[dict], kind: str, name: str) -> dict:
    for o in objs:
        if o.get("kind") == kind and o["metadata"]["name"] == name:
            return o
    raise KeyError(f"{kind}/{name}")


def self_test(ctx: Context) -> int:
    """Breaks the rendered manifests one way per check and expects that check to fail."""

    def main_container(objs, name):
        return pod_spec(find(objs, "Deployment", name))["containers"][0]

    def wrong_type(objs):
        main_container(objs, "video")["ports"][0]["containerPort"] = "8080"

    def unknown_field(objs):
        find(objs, "Service", "video")["spec"]["sessionAffinityy"] = "None"

    def writable_root(objs):
        main_container(objs, "telephony")["securityContext"]["readOnlyRootFilesystem"] = False

    def short_grace(objs):
        pod_spec(find(objs, "Deployment", "signaling"))["terminationGracePeriodSeconds"] = 20

    def wrong_probe(objs):
        main_container(objs, "monitoring")["readinessProbe"]["httpGet"]["path"] = "/healthz"

    def unknown_env(objs):
        main_container(objs, "video")["env"].append({"name": "VIDEO_TURBO", "value": "1"})

    def misplaced_env(objs):
        main_container(objs, "video")["env"].append({"name": "TWILIO_TIMEOUT", "value": "5s"})

    def missing_required(objs):
        del generated(objs, "switchboard-telephony")["data"]["PUBLIC_BASE_URL"]

    def optional_required(objs):
        for var in main_container(objs, "video")["env"]:
            if var["name"] == "GUEST_LINK_SECRET":
                var["valueFrom"]["secretKeyRef"]["optional"] = True

    def dropped_route(objs):
        for o in objs:
            if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "telephony":
                o["spec"]["rules"][0]["matches"] = [
                    m for m in o["spec"]["rules"][0]["matches"] if m["path"]["value"] != "/api/voice"
                ]
            if o["kind"] == "Ingress":
                for r in o["spec"]["rules"]:
                    r["http"]["paths"] = [p for p in r["http"]["paths"] if p["path"] != "/api/voice"]

    def no_rewrite(objs):
        for o in objs:
            if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "monitoring":
                o["spec"]["rules"] = o["spec"]["rules"][:1]
            if o["kind"] == "Ingress" and o["metadata"]["name"] == "switchboard-monitoring-webhook":
                o["metadata"]["annotations"].pop("nginx.ingress.kubernetes.io/rewrite-target")

    def no_stickiness(objs):
        for o in objs:
            if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "signaling":
                o["spec"]["rules"][0].pop("sessionPersistence")
            if o["kind"] == "Ingress" and o["metadata"]["name"] == "switchboard-signaling":
                o["metadata"]["annotations"].pop("nginx.ingress.kubernetes.io/affinity")

    def bad_backend(objs):
        for o in objs:
            if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "video":
                o["spec"]["rules"][0]["backendRefs"][0]["port"] = 8080
            if o["kind"] == "Ingress" and o["metadata"]["name"] == "switchboard":
                o["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "https"}

    def no_migrate_gate(objs):
        pod_spec(find(objs, "Deployment", "video"))["initContainers"] = []

    def fixed_configmap_name(objs):
        cm = generated(objs, "switchboard-video")
        old = cm["metadata"]["name"]
        cm["metadata"]["name"] = "switchboard-video"
        for d in by_kind(objs, "Deployment"):
            for c in pod_spec(d)["containers"]:
                for source in c.get("envFrom", []):
                    if source.get("configMapRef", {}).get("name") == old:
                        source["configMapRef"]["name"] = "switchboard-video"

    def edited_configmap(objs):
        generated(objs, "switchboard-shared")["data"]["RUST_LOG"] = "debug"

    def migrate_job(objs):
        return next(j for j in by_kind(objs, "Job") if j["metadata"]["name"].startswith("switchboard-migrate"))

    def fixed_job_name(objs):
        migrate_job(objs)["metadata"]["name"] = "switchboard-migrate"

    def configmap_in_job(objs):
        name = generated(objs, "switchboard-shared")["metadata"]["name"]
        pod_spec(migrate_job(objs))["containers"][0]["envFrom"] = [{"configMapRef": {"name": name}}]

    def livekit_on_7880(objs):
        generated(objs, "switchboard-video")["data"]["LIVEKIT_URL"] = "ws://livekit:7880"

    def no_https_egress(objs):
        policy = find(objs, "NetworkPolicy", "switchboard-egress")
        for rule in policy["spec"]["egress"]:
            rule["ports"] = [p for p in rule["ports"] if p["port"] != 443]

    def has_external_secrets(objs, nats):
        return bool(by_kind(objs, "ExternalSecret"))

    def has_cnpg(objs, nats):
        return bool(cnpg_app_secrets(objs))

    def has_nats(objs, nats):
        return nats is not None

    def external_secret(objs, name):
        return find(objs, "ExternalSecret", name)

    def key_not_produced(objs):
        es = external_secret(objs, "switchboard-twilio")
        es["spec"]["data"] = [d for d in es["spec"]["data"] if d["secretKey"] != "TWILIO_AUTH_TOKEN"]

    def secret_not_produced(objs):
        for var in main_container(objs, "video")["env"]:
            if var["name"] == "GUEST_LINK_SECRET":
                var["valueFrom"]["secretKeyRef"]["name"] = "switchboard-guest-links"

    def other_store(objs):
        external_secret(objs, "switchboard-livekit")["spec"]["secretStoreRef"]["name"] = "someone-elses-store"

    def misspelled_es_field(objs):
        external_secret(objs, "switchboard-video")["spec"]["refreshIntervall"] = "1h"

    def misspelled_cnpg_field(objs):
        next(c for c in objs if c.get("kind") == "Cluster")["spec"]["storage"]["sizee"] = "20Gi"

    def wrong_cnpg_key(objs):
        main_container(objs, "telephony")["env"][0]["valueFrom"]["secretKeyRef"]["key"] = "password"

    def unknown_chart_key(objs, nats):
        nats["config"]["jetstream"]["fileStore"]["pvc"]["sise"] = "20Gi"

    def one_nats_server(objs, nats):
        nats["config"]["cluster"]["replicas"] = 1

    def r1_streams(objs, nats):
        generated(objs, "switchboard-shared")["data"]["EVENTS_STREAM_REPLICAS"] = "1"

    def nats_url_elsewhere(objs, nats):
        es = external_secret(objs, "switchboard-shared")
        es["spec"]["target"]["template"]["data"]["NATS_URL"] = "nats://switchboard:{{ .SWITCHBOARD_NATS_PASSWORD }}@nats-headless:4222"

    def nats_on_one_node(objs, nats):
        nats["podTemplate"]["topologySpreadConstraints"]["kubernetes.io/hostname"]["whenUnsatisfiable"] = "ScheduleAnyway"

    def made_up_metric(dashboard):
        panel = next(p for p in dashboard["panels"] if p.get("targets"))
        panel["targets"][0]["expr"] = "sum(rate(sb_made_up_total[5m]))"

    manifest_cases = [
        ("schema", "a port number as a string", wrong_type),
        ("schema", "an unknown field", unknown_field),
        ("workloads", "a writable root filesystem", writable_root),
        ("workloads", "a grace period shorter than the drain", short_grace),
        ("workloads", "readiness on /healthz", wrong_probe),
        ("workloads", "no migrate --check init container", no_migrate_gate),
        ("env", "a variable no service reads", unknown_env),
        ("env", "another service's variable", misplaced_env),
        ("env", "a required variable missing", missing_required),
        ("env", "a required secret made optional", optional_required),
        ("routes", "a prefix dropped from the gateway", dropped_route),
        ("routes", "monitoring's webhook not rewritten", no_rewrite),
        ("routes", "signaling without sticky sessions", no_stickiness),
        ("crds|routes", "a route to a Service port that does not exist", bad_backend),
        ("config", "a ConfigMap with a fixed name", fixed_configmap_name),
        ("config", "a ConfigMap changed without a new name", edited_configmap),
        ("workloads", "a migrate Job named the same for every release", fixed_job_name),
        ("workloads", "a ConfigMap in the migrate Job's pod template", configmap_in_job),
        ("egress", "a self-hosted LiveKit on 7880 without its port open", livekit_on_7880),
        ("egress", "HTTPS egress closed", no_https_egress),
        ("secrets", "a Secret key no ExternalSecret produces", key_not_produced, has_external_secrets),
        ("secrets", "a Secret nothing produces", secret_not_produced, has_external_secrets),
        ("secrets", "an ExternalSecret reading another store", other_store, has_external_secrets),
        ("crds", "an ExternalSecret field that does not exist", misspelled_es_field, has_external_secrets),
        ("crds", "a CloudNativePG Cluster field that does not exist", misspelled_cnpg_field, has_cnpg),
        ("env|secrets", "DATABASE_URL from the password key of the CloudNativePG Secret", wrong_cnpg_key, has_cnpg),
        ("nats", "a key the NATS chart does not have", unknown_chart_key, has_nats),
        ("nats", "one NATS server for R3 streams", one_nats_server, has_nats),
        ("nats", "R1 streams on a 3-node NATS cluster", r1_streams, has_nats),
        ("nats", "NATS_URL pointing elsewhere than the client Service", nats_url_elsewhere, has_nats),
        ("nats", "two NATS servers allowed on one node", nats_on_one_node, has_nats),
    ]
    failures = 0
    for check, what, breaker, *applies in manifest_cases:
        for overlay, objs in ctx.rendered.items():
            broken = copy.deepcopy(objs)
            nats = copy.deepcopy(ctx.nats.get(overlay))
            if applies and not applies[0](broken, nats):
                print(f"  self-test {overlay}: {what}: not applicable (nothing of the kind in {overlay})")
                continue
            if breaker.__code__.co_argcount == 2:
                breaker(broken, nats)
            else:
                breaker(broken)
            results = run_checks(ctx, {overlay: broken}, ctx.dashboard, [], {overlay: nats})
            caught = [e for name, errs in results.items() if re.search(rf": ({check})$", name) for e in errs]
            status = "caught" if caught else "MISSED"
            failures += not caught
            print(f"  self-test {overlay}: {what}: {status}" + (f" ({caught[0]})" if caught else ""))
    for overlay in ctx.rendered:
        caught = check_release(overlay, drop_replacements=True)
        failures += not caught
        print(f"  self-test {overlay}: the migrate Job's name not following the image tag: {'caught' if caught else 'MISSED'}" + (f" ({caught[0]})" if caught else ""))
    caught = check_egress(render_livekit_example(with_component=False))
    failures += not caught
    print(f"  self-test livekit-self-hosted: {LIVEKIT_SELF_HOSTED} without the component: {'caught' if caught else 'MISSED'}" + (f" ({caught[0]})" if caught else ""))
    broken = copy.deepcopy(ctx.dashboard)
    made_up_metric(broken)
    caught = check_dashboard(broken, ctx.metrics)
    failures += not caught
    print(f"  self-test grafana: an unknown metric: {'caught' if caught else 'MISSED'}" + (f" ({caught[0]})" if caught else ""))
    return failures


def main() -> int:
    ctx = Context()
    notes: list[str] = []
    results = run_checks(ctx, ctx.rendered, ctx.dashboard, notes)
    for overlay in ctx.rendered:
        results[f"{overlay}: release"] = check_release(overlay)
    results["livekit-self-hosted example: egress"] = check_egress(render_livekit_example())
    failed = 0
    for name, errors in results.items():
        print(f"{'ok  ' if not errors else 'FAIL'} {name}")
        for error in errors:
            print(f"       {error}")
        failed += bool(errors)
    for note in sorted(set(notes)):
        print(f"note {note}")
    counts = ", ".join(f"{o}: {len(objs)} objects" for o, objs in ctx.rendered.items())
    print(f"rendered with kubectl kustomize ({counts}); schemas of Kubernetes {K8S_VERSION}")
    if "--self-test" in sys.argv[1:]:
        print("self-test: each check must catch a manifest broken its way")
        missed = self_test(ctx)
        if missed:
            print(f"self-test: {missed} breakage(s) MISSED")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
