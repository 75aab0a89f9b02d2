"""The README's sandbox curl flow works as written; docs/sandbox.md's table is the code's."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tracker.sandbox import MAGIC_NUMBERS, running_sandbox

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "sandbox.md"
README = ROOT / "README.md"
DOC_BASE_URL = "http://127.0.0.1:8090"


def shell_blocks(document: Path, heading: str) -> list[str]:
    """The ```sh blocks under one heading (up to the next heading), in order."""
    text = document.read_text(encoding="utf-8")
    body = text.split(f"{heading}\n", 1)[1].split("\n#", 1)[0]
    return re.findall(r"```sh\n(.*?)```", body, flags=re.DOTALL)


@pytest.mark.skipif(
    shutil.which("curl") is None and os.environ.get("CI") != "true",
    reason="curl is not installed (under CI=true this fails instead)",
)
def test_the_documented_curl_flow_works() -> None:
    """Token, send with an Idempotency-Key (twice: one send), then stats, exactly as written."""
    token_block, send_block, stats_block = shell_blocks(README, "### Try it with curl")
    separator = "echo; echo '-----'"
    with running_sandbox() as base_url:
        steps = [token_block, send_block, send_block, stats_block]
        script = "set -euo pipefail\n" + f"\n{separator}\n".join(steps)
        script = script.replace(DOC_BASE_URL, base_url)
        result = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True
        )

    outputs = [json.loads(part) for part in result.stdout.split("-----\n")]
    token, sent, replayed, stats = outputs
    assert token["token_type"] == "Bearer"
    assert sent["status"] == "Pending"
    assert replayed == sent
    assert stats["accepted_sends"] == 1
    assert stats["replays"] == 1


def test_the_documented_magic_number_table_is_the_codes() -> None:
    """Every magic number in faults.py is in the document's table, and no other."""
    text = DOC.read_text(encoding="utf-8")
    documented = re.findall(r"^\| `(2547\d{8})` \|", text, flags=re.MULTILINE)

    assert documented == list(MAGIC_NUMBERS)
