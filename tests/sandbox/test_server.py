"""Serving the sandbox: the in-thread helper for tests and the ``tracker sandbox`` command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette

from tracker.sandbox import SandboxConfig, running_app, running_sandbox
from tracker.sandbox.cli import split_names

CLI = "import typer; from tracker.sandbox.cli import run; typer.run(run)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_running_sandbox_serves_on_a_free_port_and_stops() -> None:
    """Two sandboxes get their own ports, answer while open and release them on exit."""
    with running_sandbox() as first, running_sandbox(SandboxConfig()) as second:
        ports = [httpx.URL(url).port for url in (first, second)]
        assert first != second
        assert httpx.get(f"{first}/sandbox/health").json() == {"status": "ok"}
        assert httpx.get(f"{second}/sandbox/health").json() == {"status": "ok"}

    assert not any(port_is_open(port) for port in ports if port is not None)


def test_running_sandbox_honours_an_explicit_port() -> None:
    """A fixed port (like the CLI's 8090) is used as given."""
    port = free_port()

    with running_sandbox(port=port) as url:
        assert url == f"http://127.0.0.1:{port}"


def test_an_app_that_fails_to_start_raises_and_frees_its_port() -> None:
    """A lifespan error surfaces as RuntimeError, not a hang, and nothing is left listening."""

    @asynccontextmanager
    async def broken(_app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("boom")
        yield  # pragma: no cover - makes this a generator

    port = free_port()
    with (
        pytest.raises(RuntimeError, match="start-up"),
        running_app(Starlette(lifespan=broken), port=port),
    ):
        pass  # pragma: no cover

    assert not port_is_open(port)


def test_sender_names_accept_repeats_and_commas() -> None:
    """--sender-names A --sender-names B,C and TRACKER_SENDER_NAMES=A,B both work."""
    assert split_names(["KIMISMS", "ACME, OTHER", "", "ACME"]) == ("KIMISMS", "ACME", "OTHER")


def test_the_cli_serves_the_tracker_credentials_from_the_environment() -> None:
    """``run`` as a typer command takes TRACKER_* credentials and senders, and stops on SIGINT."""
    port = free_port()
    env = {
        **os.environ,
        "TRACKER_KIMISMS_CLIENT_ID": "from-env",
        "TRACKER_KIMISMS_CLIENT_SECRET": "env-secret",
        "TRACKER_SENDER_NAMES": "ACME,OTHER",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "--port", str(port), "--rate-limit", "5"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, process)
        token = httpx.post(
            f"{base_url}/api/generate-token",
            json={
                "grant_type": "client_credentials",
                "client_id": "from-env",
                "client_secret": "env-secret",
            },
        ).json()["access_token"]
        sent = httpx.post(
            f"{base_url}/api/send-sms",
            json={"sender_name": "OTHER", "contact": "254712345678", "message": "Hi"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert sent.status_code == 200
    finally:
        stderr = stop(process)

    assert process.returncode in {0, 130}  # 130: the conventional exit after Ctrl-C
    assert "Application shutdown complete" in stderr
    assert "Traceback" not in stderr
    assert "env-secret" not in stderr


def stop(process: subprocess.Popen[str]) -> str:
    """Ctrl-C, then kill if it does not stop: never leave a process behind."""
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return stderr


def wait_until_healthy(base_url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sandbox command exited during start-up"
        try:
            if httpx.get(f"{base_url}/sandbox/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("the sandbox command did not become healthy")
