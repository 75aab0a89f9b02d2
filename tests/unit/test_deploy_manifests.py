"""The deployment's promises (#18), kept true: every manifest checked against a schema, then
its properties: callbacks alone public, internal API and /metrics closed, disruption budgets,
migrations per release, the dispatcher's liveness, secrets as files, the spool on a claim,
compose restarts and generated secrets, systemd's build step.

There is no kubeconform here, so ``SCHEMA`` below is the part of each kind's
OpenAPI schema that these files use: required fields and their types.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.unit import test_deploy_files as files
from tracker import heartbeat, settings

DEPLOY, ROOT = files.DEPLOY, files.DEPLOY.parent
CALLBACKS = "/v1/callbacks/kimisms/"
PORT = 8000
POD = {"spec.containers": list}
WORKLOAD = {"spec.selector.matchLabels": dict, "spec.template.metadata.labels": dict}
SCHEMA: dict[tuple[str, str], dict[str, type]] = {
    ("v1", "Namespace"): {},
    ("v1", "ConfigMap"): {"data": dict},
    ("v1", "Secret"): {"stringData": dict, "type": str},
    ("v1", "Service"): {"spec.selector": dict, "spec.ports": list},
    ("apps/v1", "Deployment"): {**WORKLOAD, "spec.replicas": int, "spec.template.spec": dict},
    ("apps/v1", "StatefulSet"): {
        **WORKLOAD,
        "spec.replicas": int,
        "spec.serviceName": str,
        "spec.template.spec": dict,
        "spec.volumeClaimTemplates": list,
    },
    ("networking.k8s.io/v1", "Ingress"): {"spec.rules": list, "spec.tls": list},
    ("networking.k8s.io/v1", "NetworkPolicy"): {"spec.podSelector": dict, "spec.policyTypes": list},
    ("policy/v1", "PodDisruptionBudget"): {"spec.selector.matchLabels": dict},
}
CONTAINER = {"name": str, "image": str}
PROBE_KEYS = {"httpGet", "exec", "tcpSocket", "grpc"}


def dig(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in files.kubernetes_objects(DEPLOY) if doc["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in objects(kind) if doc["metadata"]["name"] == name]
    return found


def schema_problems(doc: dict[str, Any]) -> list[str]:
    """What a document lacks or has of the wrong type, per SCHEMA; [] when it conforms."""
    where = f"{doc.get('kind')} {dig(doc, 'metadata.name')}"
    fields = SCHEMA.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if fields is None:
        return [f"{where}: unknown apiVersion/kind {doc.get('apiVersion')}/{doc.get('kind')}"]
    fields = {"metadata.name": str, "metadata.namespace": str, **fields}
    if doc["kind"] == "Namespace":
        fields.pop("metadata.namespace")
    problems = [
        f"{where}: {path} must be a {kind.__name__}"
        for path, kind in fields.items()
        if not isinstance(dig(doc, path), kind)
    ]
    for spec in files.pod_specs(doc):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            problems += [
                f"{where}: container {key} must be a {kind.__name__}"
                for key, kind in CONTAINER.items()
                if not isinstance(container.get(key), kind)
            ]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in container and len(PROBE_KEYS & set(container[probe])) != 1:
                    problems.append(f"{where}: {probe} needs exactly one of {sorted(PROBE_KEYS)}")
    selector, labels = (
        dig(doc, "spec.selector.matchLabels"),
        dig(doc, "spec.template.metadata.labels"),
    )
    if labels is not None and not selector.items() <= labels.items():
        problems.append(f"{where}: the selector does not match the pod labels")
    return problems


def selects(selector: dict[str, str], doc: dict[str, Any]) -> bool:
    labels = dig(doc, "spec.template.metadata.labels") or {}
    return selector.items() <= labels.items()


def test_every_manifest_conforms_to_its_kinds_schema() -> None:
    """apiVersion/kind known, required fields present with their types, selectors match."""
    documents = [doc for _, doc in files.kubernetes_objects(DEPLOY)]
    assert len(documents) >= 12
    assert [problem for doc in documents for problem in schema_problems(doc)] == []


def test_the_schema_check_catches_a_broken_manifest() -> None:
    """A wrong type, a missing field, an unknown kind and a stray selector are each caught."""
    service = {**one("Service", "tracker-api"), "spec": {"ports": "80"}}
    assert len(schema_problems(service)) == 2
    assert schema_problems({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})
    workload = one("Deployment", "tracker-dispatcher")
    broken = {**workload, "spec": {**workload["spec"], "selector": {"matchLabels": {"a": "b"}}}}
    assert schema_problems(broken) == [
        "Deployment tracker-dispatcher: the selector does not match the pod labels"
    ]


def test_only_the_callback_path_is_exposed_by_the_ingress() -> None:
    """One rule, one Prefix path /v1/callbacks/kimisms/, over TLS, to the API Service's port."""
    (ingress,) = objects("Ingress")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == (CALLBACKS, "Prefix")
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
    backend = path["backend"]["service"]
    service = one("Service", backend["name"])
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
    config = one("ConfigMap", "tracker-config")["data"]
    assert config["TRACKER_PUBLIC_URL"] == f"https://{rule['host']}"


def test_network_policies_keep_the_api_and_metrics_internal() -> None:
    """Default deny; the API's port only from named namespaces; the dispatcher from nowhere."""
    policies = objects("NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    assert deny
    assert "Ingress" in deny[0]["spec"]["policyTypes"]
    allowing = [p for p in policies if p["spec"].get("ingress")]
    api = one("StatefulSet", "tracker-api")
    dispatcher = one("Deployment", "tracker-dispatcher")
    for policy in allowing:
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert selects(selector, api)
        assert not selects(selector, dispatcher)
        for rule in policy["spec"]["ingress"]:
            assert rule["ports"] == [{"protocol": "TCP", "port": PORT}]
            assert rule["from"], "an empty 'from' would admit everyone"
            for peer in rule["from"]:
                assert set(peer) == {"namespaceSelector"}  # no ipBlock: nothing from outside
                assert peer["namespaceSelector"]["matchLabels"]


def test_every_workload_has_a_disruption_budget_that_leaves_one_running() -> None:
    """Drains keep one API pod (callbacks) and one dispatcher; the budget never blocks all."""
    budgets = objects("PodDisruptionBudget")
    for workload in [*objects("StatefulSet"), *objects("Deployment")]:
        (budget,) = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], workload)]
        assert 1 <= budget["spec"]["minAvailable"] < workload["spec"]["replicas"]


def test_each_release_migrates_itself_one_pod_at_a_time() -> None:
    """An init container runs `tracker db upgrade` in the API pods, which start in order."""
    api = one("StatefulSet", "tracker-api")
    (init,) = api["spec"]["template"]["spec"]["initContainers"]
    assert init["command"] + init["args"] == ["tracker", "db", "upgrade"]
    assert init["image"] == api["spec"]["template"]["spec"]["containers"][0]["image"]
    assert api["spec"]["podManagementPolicy"] == "OrderedReady"  # never two upgrades at once
    assert api["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert objects("Job") == []  # nothing to delete and re-apply by hand


def test_the_dispatcher_is_live_only_while_its_heartbeat_is_fresh() -> None:
    """Its liveness probe reads the heartbeat `tracker worker` writes in TRACKER_DATA_DIR."""
    dispatcher = one("Deployment", "tracker-dispatcher")
    spec = dispatcher["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["livenessProbe"]["exec"]["command"]
    assert command[:3] == ["python", "-m", "tracker.heartbeat"]
    data_dir = Path(one("ConfigMap", "tracker-config")["data"]["TRACKER_DATA_DIR"])
    assert command[3] == str(heartbeat.path_in(data_dir))
    assert float(command[4]) >= 6 * heartbeat.BEAT_SECONDS  # several missed beats, not one
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert not mounts[str(data_dir)].get("readOnly")  # the worker can write it


def test_secrets_are_files_named_by_the_file_settings() -> None:
    """No secret in an environment variable: each TRACKER_*_FILE names a mounted Secret key."""
    config = one("ConfigMap", "tracker-config")["data"]
    secret_keys = set(one("Secret", "tracker-secrets")["stringData"])
    file_settings = {name: path for name, path in config.items() if name.endswith("_FILE")}
    expected = {f"TRACKER_{field.upper()}_FILE" for field in settings.SECRET_FIELDS}
    assert set(file_settings) == expected
    for spec in [s for _, doc in files.kubernetes_objects(DEPLOY) for s in files.pod_specs(doc)]:
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            assert all("valueFrom" not in item for item in container.get("env", []))
            assert all("secretRef" not in item for item in container.get("envFrom", []))
            mounted = files.mounted_secret_files(DEPLOY, spec, container)
            assert set(file_settings.values()) <= set(mounted), container["name"]
    assert {Path(path).name for path in file_settings.values()} == secret_keys


def test_the_callback_spool_lives_on_each_api_pods_own_claim() -> None:
    """The API is a StatefulSet whose data dir is a PersistentVolumeClaim, never an emptyDir."""
    api = one("StatefulSet", "tracker-api")
    data_dir = one("ConfigMap", "tracker-config")["data"]["TRACKER_DATA_DIR"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
    claims = {claim["metadata"]["name"] for claim in api["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims
    volumes = {v["name"] for v in api["spec"]["template"]["spec"].get("volumes", [])}
    assert mount["name"] not in volumes  # not an emptyDir of the pod
    governing = one("Service", api["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"


def test_compose_restarts_services_and_holds_no_password() -> None:
    """Restart policies on every service; passwords only in secret files, none inline."""
    compose = files.compose_file(DEPLOY)
    for name, service in compose["services"].items():
        assert service.get("restart") in {"unless-stopped", "on-failure"}, name
        environment = service.get("environment", {})
        assert "POSTGRES_PASSWORD" not in environment, name
        assert "TRACKER_DATABASE_URL" not in environment, name
        for value in map(str, environment.values()):
            assert not re.search(r"://[^/@:]+:[^/@]+@", value), (name, value)
    assert compose["services"]["migrate"]["restart"] == "on-failure"  # runs once to success
    text = (DEPLOY / files.COMPOSE).read_text(encoding="utf-8")
    assert "scripts/make-secrets" in text
    script = (ROOT / "scripts" / "make-secrets").read_text(encoding="utf-8")
    made = set(re.findall(r"^write (\w+) ", script, re.MULTILINE))
    assert made == set(compose["secrets"])


def test_make_secrets_fills_a_fresh_clone_and_keeps_what_exists(tmp_path: Path) -> None:
    """Random values, the database URL carrying PostgreSQL's password; a rerun changes nothing."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "deploy").mkdir()
    script = tmp_path / "scripts" / "make-secrets"
    shutil.copy(ROOT / "scripts" / "make-secrets", script)

    def run(*args: str) -> dict[str, str]:
        subprocess.run([str(script), *args], check=True, capture_output=True, timeout=30)
        folder = tmp_path / "deploy" / "secrets"
        return {path.name: path.read_text(encoding="utf-8") for path in folder.iterdir()}

    first = run()
    assert set(first) == {
        "postgres_password",
        "database_url",
        "kimisms_client_secret",
        "callback_secrets",
    }
    password = first["postgres_password"]
    assert len(password) >= 32
    assert first["database_url"] == f"postgresql://tracker:{password}@postgres:5432/tracker"
    assert re.fullmatch(r"k1:[0-9a-f]{64}", first["callback_secrets"])
    assert run() == first
    forced = run("--force")
    assert forced["postgres_password"] != password
    assert password not in forced["database_url"]


@pytest.mark.parametrize("unit", ["tracker.service", "tracker.socket"])
def test_systemd_says_how_to_build_the_wheel_and_has_its_socket(unit: str) -> None:
    """The install steps build the wheel (`python -m build`) and install it with the lock."""
    text = (DEPLOY / "systemd" / unit).read_text(encoding="utf-8")
    assert "ListenStream=" in text or "python3 -m build --wheel" in text
    if unit == "tracker.service":
        assert "--require-hashes -r requirements.lock" in text
        assert "--no-deps" in text
