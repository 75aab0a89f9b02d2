"""The deployment files stay true: they parse, and their commands and variables exist.

There is no container engine in CI, so nothing here builds an image: the files
are read as data. Every ``tracker ...`` command they run (Dockerfile, compose,
Kubernetes, systemd, the README) is parsed by the real CLI's click command
tree, and every ``TRACKER_*`` name is checked against the settings.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import typer
import yaml

from tracker import server
from tracker.app import create_app
from tracker.cli import cli
from tracker.settings import ENV_PREFIX, SECRET_FIELDS, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = "docker-compose.yml"
KUBERNETES = "kubernetes"
TRACKER_IMAGE = "kimisms-tracker"  # Kubernetes images are named <registry>/kimisms-tracker:<tag>
SHELLS = frozenset({"sh", "bash", "/bin/sh", "/bin/bash"})
SHELL_OPERATORS = frozenset("();<>|&")
VARIABLE = re.compile(r"\bTRACKER_[A-Z0-9_]+\b")
# Placeholders for secret files in the compose trial (the files are not in git).
SECRET_FILE_VALUES = {
    "database_url": "postgresql://tracker:x@postgres:5432/tracker",
    "kimisms_client_secret": "sandbox-secret",
    "callback_secrets": "k1:" + "x" * 32,
}


# --- reading the files ----------------------------------------------------------


def yaml_files(root: Path) -> list[Path]:
    return sorted([*root.rglob("*.yml"), *root.rglob("*.yaml")])


def yaml_documents(path: Path) -> list[Any]:
    """Every document of a (possibly multi-document) YAML file, empty ones dropped."""
    text = path.read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def compose_file(root: Path) -> dict[str, Any]:
    (document,) = yaml_documents(root / COMPOSE)
    assert isinstance(document, dict)
    return document


def kubernetes_objects(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in yaml_files(root / KUBERNETES)
        for doc in yaml_documents(path)
        if isinstance(doc, dict)
    ]


@dataclass(frozen=True)
class Image:
    """What the runtime stage of the Dockerfile sets."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    exposed: list[int]
    healthcheck: list[str]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending += " " + line.strip().removesuffix("\\")
        if line.rstrip().endswith("\\"):
            continue
        if pending.strip():
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    return [str(item) for item in value]


def read_image(root: Path) -> Image:
    instructions = dockerfile_instructions(root / "Dockerfile")
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    image = Image(entrypoint=[], cmd=[], env={}, exposed=[], healthcheck=[])
    for keyword, arguments in instructions[last_from:]:
        if keyword == "ENTRYPOINT":
            image.entrypoint[:] = exec_form(arguments)
        elif keyword == "CMD":
            image.cmd[:] = exec_form(arguments)
        elif keyword == "ENV":
            image.env.update(item.partition("=")[::2] for item in shlex.split(arguments))
        elif keyword == "EXPOSE":
            image.exposed.extend(int(port.split("/")[0]) for port in arguments.split())
        elif keyword == "HEALTHCHECK":
            image.healthcheck[:] = exec_form(arguments.partition(" CMD ")[2] or arguments)
    return image


# --- finding the tracker commands -----------------------------------------------


def is_tracker(token: str) -> bool:
    return token == "tracker" or token.endswith("/bin/tracker")


def as_argv(value: Any) -> list[str]:
    """Compose and Kubernetes accept a list or a shell-like string."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


def shell_calls(script: str) -> list[list[str]]:
    """Arguments of every ``tracker`` run in a shell script (up to ``;``, ``&&``, ``|``...)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    calls: list[list[str]] = []
    for index, token in enumerate(tokens):
        if is_tracker(token):
            args: list[str] = []
            for arg in tokens[index + 1 :]:
                if set(arg) <= SHELL_OPERATORS:
                    break
                args.append(arg)
            calls.append(args)
    return calls


def tracker_calls(argv: Sequence[str]) -> list[list[str]]:
    """The tracker arguments an argv runs: directly, or through ``sh -c``."""
    if argv and is_tracker(argv[0]):
        return [list(argv[1:])]
    if argv and argv[0] in SHELLS and "-c" in argv[1:-1]:
        return shell_calls(argv[argv.index("-c") + 1])
    return []


@dataclass(frozen=True)
class Call:
    where: str
    args: tuple[str, ...]


def dockerfile_calls(root: Path) -> Iterator[Call]:
    image = read_image(root)
    calls = tracker_calls([*image.entrypoint, *image.cmd])
    assert calls, "the Dockerfile's ENTRYPOINT and CMD run no tracker command"
    for args in calls:
        yield Call("Dockerfile ENTRYPOINT/CMD", tuple(args))


def compose_calls(root: Path) -> Iterator[Call]:
    image = read_image(root)
    for name, service in compose_file(root)["services"].items():
        entrypoint, command = service.get("entrypoint"), service.get("command")
        # Another image runs only what the file says; a new entrypoint drops the image's CMD.
        if "build" not in service or entrypoint is not None:
            argv = as_argv(entrypoint) + as_argv(command)
        else:
            argv = image.entrypoint + (as_argv(command) if command is not None else image.cmd)
        calls = tracker_calls(argv)
        assert calls or "build" not in service, f"{COMPOSE}: {name} runs no tracker command"
        for args in calls:
            yield Call(f"{COMPOSE}: service {name}", tuple(args))


def pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "containers" in node:
            yield node
        for value in node.values():
            yield from pod_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from pod_specs(item)


def kubernetes_calls(root: Path) -> Iterator[Call]:
    image = read_image(root)
    for path, document in kubernetes_objects(root):
        for spec in pod_specs(document):
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                where = f"{path.name}: container {container['name']}"
                command, args = container.get("command"), container.get("args")
                if TRACKER_IMAGE in container["image"]:
                    # Kubernetes: `command` replaces ENTRYPOINT and drops CMD; `args` replaces CMD.
                    argv = as_argv(command) if command is not None else image.entrypoint
                    default_args = image.cmd if command is None else []
                    argv += as_argv(args) if args is not None else default_args
                else:
                    argv = as_argv(command) + as_argv(args)
                calls = tracker_calls(argv)
                assert calls or TRACKER_IMAGE not in container["image"], f"{where}: no command"
                yield from (Call(where, tuple(call)) for call in calls)


def systemd_calls(root: Path) -> Iterator[Call]:
    for path in sorted((root / "systemd").glob("*.service")):
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("Exec"):
                argv = shlex.split(value.lstrip("-@:+!|"))
                yield from (Call(f"{path.name}: {key}", tuple(c)) for c in tracker_calls(argv))


def markdown_calls(root: Path) -> Iterator[Call]:
    """``tracker`` commands in code blocks and code spans (a bare mention is not a call)."""
    for path in sorted(root.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
        snippets = [line for block in blocks for line in block.splitlines()]
        prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
        snippets += re.findall(r"`([^`\n]+)`", prose)
        for snippet in snippets:
            for args in shell_calls(snippet):
                if args:
                    yield Call(f"{path.name}: `{snippet}`", tuple(args))


def all_calls(root: Path) -> list[Call]:
    return [
        *dockerfile_calls(root),
        *compose_calls(root),
        *kubernetes_calls(root),
        *systemd_calls(root),
        *markdown_calls(root),
    ]


# --- checking them against the CLI and the settings -----------------------------


# Typer vendors click since 0.2x (its own classes, exceptions derived from
# TyperException); older typer used click itself. Accept either.
GROUPS = (typer.core.TyperGroup, click.Group)
USAGE_ERRORS = (typer.TyperException, click.ClickException)


@functools.cache
def command_tree() -> Any:
    return typer.main.get_command(cli)


def subcommands(command: Any) -> dict[str, Any]:
    return dict(command.commands) if isinstance(command, GROUPS) else {}


def command_error(args: Sequence[str]) -> str | None:
    """Why ``tracker ARGS`` would not run (unknown command, option or value), or None."""
    command = command_tree()
    path = ["tracker"]
    rest = list(args)
    while isinstance(command, GROUPS):
        if not rest or rest[0].startswith("-"):
            return f"`{' '.join(path)}` needs a command"
        name = rest.pop(0)
        if name not in subcommands(command):
            return f"`{' '.join(path)}` has no command {name!r}"
        command = subcommands(command)[name]
        path.append(name)
    try:  # parse and validate the options like a real run, without running the command
        with command.make_context(" ".join(path), list(rest)):
            pass
    except USAGE_ERRORS as exc:
        return f"`{' '.join([*path, *rest])}`: {exc}"
    return None


def command_problems(root: Path) -> list[str]:
    return [
        f"{call.where}: {error}"
        for call in all_calls(root)
        if (error := command_error(call.args)) is not None
    ]


def cli_envvars(command: Any) -> set[str]:
    """Environment variables read by the CLI's own options (client-side ones included)."""
    names: set[str] = set()
    for param in command.params:
        envvar = param.envvar
        names.update([envvar] if isinstance(envvar, str) else list(envvar or []))
    for sub in subcommands(command).values():
        names |= cli_envvars(sub)
    return names


def known_variables() -> set[str]:
    names = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    names |= {f"{ENV_PREFIX}{field.upper()}_FILE" for field in SECRET_FIELDS}
    return names | {name for name in cli_envvars(command_tree()) if name.startswith(ENV_PREFIX)}


def variable_problems(root: Path) -> list[str]:
    """Unknown TRACKER_* names in any file under root (local secret files excepted)."""
    known = known_variables()
    problems = []
    files = [
        p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "secrets"
    ]
    for path in sorted(files):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            problems += [
                f"{path.relative_to(root)}:{number}: {name} is not a setting"
                for name in VARIABLE.findall(line)
                if name not in known
            ]
    return problems


def compose_problems(compose: dict[str, Any]) -> list[str]:
    """Names a compose file uses that it does not define (services, secrets, volumes)."""
    services = compose.get("services", {})
    problems = []
    for name, service in services.items():
        depends_on = service.get("depends_on", [])
        used = [*depends_on, *service.get("links", []), *service.get("volumes_from", [])]
        network_mode = service.get("network_mode", "")
        if network_mode.startswith("service:"):
            used.append(network_mode.removeprefix("service:"))
        if "extends" in service:
            used.append(service["extends"]["service"])
        problems += [f"{name} uses service {other!r}" for other in used if other not in services]
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            if source not in compose.get("secrets", {}):
                problems.append(f"{name} uses secret {source!r}")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            named = source and not source.startswith((".", "/", "~", "$"))
            if named and source not in compose.get("volumes", {}):
                problems.append(f"{name} uses volume {source!r}")
    return problems


def load_settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings.load() with exactly this TRACKER_* environment."""
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.load()


def kubernetes_data(root: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(kind, name) -> the keys and values of every ConfigMap and Secret."""
    return {
        (doc["kind"], doc["metadata"]["name"]): {**doc.get("data", {}), **doc.get("stringData", {})}
        for _, doc in kubernetes_objects(root)
        if doc["kind"] in {"ConfigMap", "Secret"}
    }


def mounted_secret_files(
    root: Path, spec: dict[str, Any], container: dict[str, Any]
) -> dict[str, str]:
    """path in the container -> value, for every file of every Secret volume it mounts."""
    data = kubernetes_data(root)
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    return {
        f"{mount['mountPath']}/{key}": value
        for mount in container.get("volumeMounts", [])
        if mount["name"] in secrets
        for key, value in data["Secret", secrets[mount["name"]]].items()
    }


def with_files_in(env: dict[str, str], files: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Each TRACKER_*_FILE naming a mounted file points at a local copy of it instead."""
    local = dict(env)
    for name, path in env.items():
        if name.endswith("_FILE") and path in files:
            copy = tmp_path / name
            copy.write_text(files[path], encoding="utf-8")
            local[name] = str(copy)
    return local


def kubernetes_env(root: Path, container: dict[str, Any], image: Image) -> dict[str, str]:
    """A container's environment: image ENV, then envFrom, then env (secrets resolved)."""
    data = kubernetes_data(root)
    env = dict(image.env)
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(data["ConfigMap", source["configMapRef"]["name"]])
        else:
            env.update(data["Secret", source["secretRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        env[item["name"]] = data["Secret", ref["name"]][ref["key"]]
    return env


# --- the tests ------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    """Every YAML file in deploy/ parses, every document of a multi-document file too."""
    paths = yaml_files(DEPLOY)
    assert paths
    for path in paths:
        assert yaml_documents(path), f"{path.name} is empty"


def test_every_kubernetes_object_is_complete() -> None:
    """Every Kubernetes document names its apiVersion, kind and metadata.name."""
    objects = kubernetes_objects(DEPLOY)
    kinds = {doc["kind"] for _, doc in objects}
    assert {
        "ConfigMap", "Secret", "StatefulSet", "Deployment", "Service", "Ingress",
        "NetworkPolicy", "PodDisruptionBudget",
    } <= kinds  # fmt: skip
    for path, doc in objects:
        assert doc.get("apiVersion"), path.name
        assert doc["metadata"].get("name"), path.name


def test_the_compose_file_references_only_what_it_defines() -> None:
    """depends_on, network_mode, secrets and volumes in compose name things that exist."""
    compose = compose_file(DEPLOY)
    assert {"postgres", "migrate", "api", "sandbox"} <= set(compose["services"])
    assert compose_problems(compose) == []


def test_the_compose_checker_catches_a_missing_service() -> None:
    """A dependency on a service that does not exist is reported."""
    compose = {"services": {"api": {"depends_on": {"ghost": {}}, "secrets": ["nope"]}}}
    assert compose_problems(compose) == [
        "api uses service 'ghost'",
        "api uses secret 'nope'",
    ]


def test_every_tracker_command_in_deploy_is_real() -> None:
    """Each `tracker ...` run by any deploy file is a real command with real options."""
    calls = all_calls(DEPLOY)
    where = {call.where.split(":")[0] for call in calls}
    assert {"Dockerfile ENTRYPOINT/CMD", COMPOSE, "tracker.service", "README.md"} <= where
    assert {call.args[0] for call in calls} >= {"serve", "worker", "db", "sandbox", "callbacks"}
    assert command_problems(DEPLOY) == []


@pytest.mark.parametrize(
    "args",
    [
        ["deploy"],
        ["serve", "--bogus"],
        ["serve", "--port", "http"],
        ["db"],
        ["db", "migrate"],
        ["keys", "create"],
        ["worker", "--concurrency", "2"],
    ],
)
def test_the_command_checker_refuses_a_made_up_command(args: list[str]) -> None:
    """An unknown command, option or value, or a missing required option, is an error."""
    assert command_error(args) is not None


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("Dockerfile", 'CMD ["serve",', 'CMD ["serve", "--workers", "4",'),
        (COMPOSE, 'command: ["db", "upgrade"]', 'command: ["db", "migrate"]'),
        (COMPOSE, "exec tracker sandbox", "exec tracker sandbox --faults"),
        (f"{KUBERNETES}/dispatcher-deployment.yaml", 'args: ["worker"]', 'args: ["wrker"]'),
        ("systemd/tracker.service", "tracker serve", "tracker serve --reload"),
        ("README.md", "`tracker callbacks replay`", "`tracker callbacks flush`"),
    ],
)
def test_a_made_up_command_in_any_file_is_caught(
    tmp_path: Path, file: str, old: str, new: str
) -> None:
    """Planting a bad command in each kind of deploy file makes the check fail on that file."""
    root = tmp_path / "deploy"
    shutil.copytree(DEPLOY, root)
    text = (root / file).read_text(encoding="utf-8")
    assert old in text, f"{file} no longer contains {old!r}: update this test"
    (root / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    problems = command_problems(root)
    assert len(problems) == 1
    assert Path(file).name in problems[0]


def test_every_tracker_variable_in_deploy_is_a_setting() -> None:
    """Each TRACKER_* name in deploy/ is a setting, a secret's _FILE, or a CLI variable."""
    assert variable_problems(DEPLOY) == []


def test_the_variable_checker_catches_a_made_up_variable(tmp_path: Path) -> None:
    """A misspelt setting, and _FILE on a setting that is not a secret, are reported."""
    root = tmp_path / "deploy"
    shutil.copytree(DEPLOY, root)
    with (root / KUBERNETES / "configmap.yaml").open("a", encoding="utf-8") as file:
        file.write('  TRACKER_RATE_LIMIT_PER_MINUTES: "60"\n')
    with (root / "systemd" / "tracker.service").open("a", encoding="utf-8") as file:
        file.write("Environment=TRACKER_DATA_DIR_FILE=/etc/tracker/dir\n")
    problems = variable_problems(root)
    assert len(problems) == 2
    assert "TRACKER_RATE_LIMIT_PER_MINUTES" in problems[0]
    assert "TRACKER_DATA_DIR_FILE" in problems[1]


def test_the_compose_trial_configuration_is_accepted_by_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each tracker service's compose environment passes validation, https rule included."""
    image = read_image(DEPLOY)
    compose = compose_file(DEPLOY)
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        env = {**image.env, **service["environment"]}
        for secret, value in SECRET_FILE_VALUES.items():
            path = tmp_path / secret
            path.write_text(value, encoding="utf-8")
            env[f"{ENV_PREFIX}{secret.upper()}_FILE"] = str(path)
        settings = load_settings_from(env, monkeypatch)
        assert settings.callback_secrets.get_secret_value(), name
        assert not settings.is_sqlite, name


def test_the_compose_trial_reaches_the_sandbox_over_a_real_loopback() -> None:
    """Plain http to the sandbox is allowed only on loopback, so it shares the API's namespace."""
    services = compose_file(DEPLOY)["services"]
    provider = urlsplit(services["api"]["environment"]["TRACKER_KIMISMS_BASE_URL"])
    assert provider.hostname == "127.0.0.1"
    assert services["sandbox"]["network_mode"] == "service:api"
    (sandbox,) = [call for call in compose_calls(DEPLOY) if call.args[0] == "sandbox"]
    assert sandbox.args[sandbox.args.index("--port") + 1] == str(provider.port)


def test_every_kubernetes_workload_configuration_is_accepted_by_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each container's ConfigMap and mounted secret files resolve and pass validation."""
    image = read_image(DEPLOY)
    containers = [
        (spec, container)
        for _, document in kubernetes_objects(DEPLOY)
        for spec in pod_specs(document)
        for container in [*spec.get("initContainers", []), *spec["containers"]]
    ]
    assert len(containers) == 3  # the migration, the API, the dispatcher
    for spec, container in containers:
        files = mounted_secret_files(DEPLOY, spec, container)
        env = with_files_in(kubernetes_env(DEPLOY, container, image), files, tmp_path)
        settings = load_settings_from(env, monkeypatch)
        assert settings.callback_secrets.get_secret_value(), container["name"]
        assert settings.public_url.startswith("https://"), container["name"]
        assert settings.kimisms_base_url.startswith("https://"), container["name"]
        assert not settings.is_sqlite, container["name"]


def test_probes_and_the_healthcheck_hit_real_routes_on_the_served_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/healthz and /readyz exist in the app, on the port that serve and EXPOSE use."""
    settings = load_settings_from({f"{ENV_PREFIX}DATA_DIR": str(tmp_path)}, monkeypatch)
    routes = {getattr(route, "path", None) for route in create_app(settings).routes}
    image = read_image(DEPLOY)
    serve_ports = {
        call.args[call.args.index("--port") + 1]
        for call in all_calls(DEPLOY)
        if call.args[0] == "serve" and "--port" in call.args
    }
    assert serve_ports == {str(port) for port in image.exposed} == {"8000"}
    url = urlsplit(re.findall(r"http://[^'\"]+", " ".join(image.healthcheck))[0])
    assert (url.port, url.path) == (8000, "/healthz")
    probes = [
        (probe["httpGet"]["path"], container["ports"][0]["containerPort"])
        for _, document in kubernetes_objects(DEPLOY)
        for spec in pod_specs(document)
        for container in spec["containers"]
        for key in ("startupProbe", "readinessProbe", "livenessProbe")
        if "httpGet" in (probe := container.get(key) or {})
    ]
    # Started once the schema is current; kept ready through a database outage so the
    # callback receiver can spool (DESIGN.md invariant 2).
    assert sorted(probes) == [("/healthz", 8000), ("/healthz", 8000), ("/readyz", 8000)]
    assert {"/healthz", "/readyz"} <= routes


def unit_settings(path: Path) -> dict[str, list[str]]:
    """key -> values of a systemd unit file (keys may repeat)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_item_7_systemd_holds_the_socket_and_serve_inherits_it() -> None:
    """tracker.socket listens on loopback :8000; tracker.service requires it and serves fd 3."""
    socket_unit = unit_settings(DEPLOY / "systemd" / "tracker.socket")
    service = unit_settings(DEPLOY / "systemd" / "tracker.service")
    assert socket_unit["ListenStream"] == ["127.0.0.1:8000"]
    assert socket_unit["Accept"] == ["no"]  # one service for the socket, not one per connection
    assert socket_unit["Service"] == ["tracker.service"]
    assert "tracker.socket" in service["Requires"][0]
    (serve,) = [call for call in systemd_calls(DEPLOY) if call.args[0] == "serve"]
    assert serve.args[serve.args.index("--fd") + 1] == "3"  # systemd's first passed descriptor


def test_item_7_kubernetes_api_pods_keep_accepting_until_the_service_drops_them() -> None:
    """The API pods sleep in preStop, and their grace period covers it and the drain."""
    (api,) = [
        doc for path, doc in kubernetes_objects(DEPLOY) if path.name == "api-statefulset.yaml"
    ]
    spec = api["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    sleep = int(command[1])
    assert sleep >= 5  # endpoints and kube-proxy need a few seconds
    assert spec["terminationGracePeriodSeconds"] >= sleep + server.CONNECTIONS_GRACE_SECONDS + 5
