"""Installs are reproducible and offline when nothing changed: the lock, its bounds, the stamp."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements-dev.lock"
RUNTIME_LOCK = ROOT / "requirements.lock"
# No package source at all: this machine's pip configuration has local wheel folders,
# so an unreachable index alone would prove nothing.
OFFLINE = {"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/nonexistent"}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ \\]+)")


def pins(lock: Path) -> dict[str, str]:
    """name -> version of every pin; each must carry at least one sha256 hash."""
    found: dict[str, str] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text(encoding="utf-8"))
    for entry in entries:
        pin = PIN.match(entry)
        if pin is None:
            continue
        assert "--hash=sha256:" in entry, f"{lock.name}: {pin[1]} has no hash"
        found[canonicalize_name(pin[1])] = pin[2]
    return found


def declared() -> tuple[list[Requirement], list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = [Requirement(text) for text in project["dependencies"]]
    dev = [Requirement(text) for text in project["optional-dependencies"]["dev"]]
    return runtime, dev


def closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution these need here (markers and extras evaluated), from the venv."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(requirement.name) or []:
            needed = Requirement(text)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if needed.marker is None or any(needed.marker.evaluate(e) for e in environments):
                todo.append((needed, frozenset(needed.extras)))
    return seen


def test_every_dependency_has_a_compatible_range_with_an_upper_bound() -> None:
    """structlog, rich and the rest: a lower and an upper bound, no exact pin in pyproject."""
    runtime, dev = declared()
    for requirement in runtime + dev:
        operators = {spec.operator for spec in requirement.specifier}
        assert ">=" in operators, requirement
        assert "<" in operators, requirement
        assert "==" not in operators, requirement


def test_the_dev_lock_pins_every_declared_dependency_within_its_range() -> None:
    """requirements-dev.lock (scripts/setup, CI) satisfies pyproject, with hashes."""
    locked = pins(DEV_LOCK)
    runtime, dev = declared()
    for requirement in runtime + dev:
        version = locked.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not in {DEV_LOCK.name}"
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)


def test_the_runtime_lock_is_the_runtime_closure_at_the_dev_locks_versions() -> None:
    """requirements.lock (the image) holds what the service needs, nothing of the dev tools."""
    runtime_pins, dev_pins = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    runtime, _ = declared()
    assert set(runtime_pins) == closure(runtime)
    assert {name: dev_pins[name] for name in runtime_pins} == runtime_pins


def test_the_venv_is_what_the_lock_says() -> None:
    """scripts/setup installed exactly the dev lock's versions (so CI tests what is locked)."""
    installed: dict[str, str] = {
        canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
    }
    wrong = {n: (v, installed.get(n)) for n, v in pins(DEV_LOCK).items() if installed.get(n) != v}
    assert wrong == {}


def test_the_lock_is_what_setup_ci_and_the_image_install() -> None:
    """scripts/setup installs the dev lock with hashes; the Dockerfile the runtime lock."""
    setup = (ROOT / "scripts" / "setup").read_text(encoding="utf-8")
    assert "LOCK=requirements-dev.lock" in setup
    assert 'install --require-hashes -r "$LOCK"' in setup
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/setup" in (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "--require-hashes -r /wheels/requirements.lock" in dockerfile
    assert "COPY requirements.lock" in dockerfile


def test_a_second_setup_needs_no_package_source() -> None:
    """Nothing changed since the last scripts/setup: it succeeds with no index and no wheels."""
    stamp = ROOT / ".venv" / ".setup-stamp"
    if not stamp.exists() or Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.fail("run scripts/setup first: these tests check the install it made")
    before = stamp.read_text(encoding="utf-8")
    done = subprocess.run(
        [str(ROOT / "scripts" / "setup")],
        env={**os.environ, **OFFLINE},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert stamp.read_text(encoding="utf-8") == before


def test_a_changed_dependency_file_installs_again(tmp_path: Path) -> None:
    """Another lock means another stamp: setup calls pip (which, offline, fails loudly)."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup", checkout / "scripts" / "setup")
    shutil.copy(ROOT / "pyproject.toml", checkout / "pyproject.toml")
    (checkout / "requirements-dev.lock").write_text(
        "six==1.16.0 --hash=sha256:" + "0" * 64 + "\n", encoding="utf-8"
    )
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(checkout / ".venv")], check=True
    )
    (checkout / ".venv" / ".setup-stamp").write_text("stale\n", encoding="utf-8")
    (checkout / ".venv" / "bin" / "tracker").touch(mode=0o755)
    done = subprocess.run(
        [str(checkout / "scripts" / "setup")],
        env={**os.environ, **OFFLINE},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0
    assert "No module named pip" in done.stderr  # it went to install, as it should
    assert not (checkout / ".venv" / ".setup-stamp").exists()  # no stamp for a failed install
