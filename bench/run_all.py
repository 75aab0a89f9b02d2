"""Every benchmark of the project, one command, one table (and one JSON file).

    .venv/bin/python -m bench.run_all [--quick] [--json bench/results/all.json]

Runs each benchmark script as its own process (loopback only, each bounded in
time) and collects the figures they write with ``--json``. Every figure is a
ratio or a median against a baseline measured in the same invocation, because
this machine is shared and noisy. ``--quick`` is a smoke run with small counts:
its figures are printed, not judged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The whole run, every script included. The expiry sweep added about a minute,
# and on a loaded machine the 1M-row seed of query_latency no longer fit in 600 s;
# dispatch latency and fairness add about two minutes more, webhooks about two.
# The dashboard's overview (#16) seeds its own 1M rows: about seven minutes more.
# Retention (#17) at 200,000 old messages a database, bounded at 240 s a run: about
# eight minutes more (its full 1M/5M run is `python -m bench.retention` alone).
TIME_LIMIT_SECONDS = 2200
RETENTION_ARGS = ["--messages", "200000", "--time-limit", "240"]
MIN_SCRIPT_SECONDS = 30


def run_script(module: str, args: list[str], timeout: float) -> Any:
    """Run ``python -m bench.<module> ... --json FILE`` and read FILE back."""
    with tempfile.TemporaryDirectory() as workdir:
        output = Path(workdir) / "result.json"
        command = [sys.executable, "-m", f"bench.{module}", *args, "--json", str(output)]
        started = time.monotonic()
        try:
            completed = subprocess.run(
                command,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"bench.{module} stopped after {timeout:.0f} s"}
        # Exit 1 means "ran, missed a target": its figures still belong in the table.
        if not output.exists():
            tail = (completed.stdout + completed.stderr)[-2000:]
            return {"error": f"bench.{module} exited {completed.returncode}", "output": tail}
        result = json.loads(output.read_text())
        print(f"  bench.{module}: {time.monotonic() - started:.0f} s", file=sys.stderr)
        return result


def _dispatch_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The rows of the dispatch benchmarks: latency, fairness, and the steps."""
    table: list[tuple[str, str, str]] = []
    for latency in _list(results.get("dispatch_latency")):
        base = latency["baseline"]
        table.append(
            (
                f"dispatch 202 -> provider ({latency['backend']}, {latency['setup']})",
                (
                    f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms "
                    f"(raw POST p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms)"
                ),
                "p50 <= 10 ms, p99 <= 50 ms",
            )
        )
    for fair in _list(results.get("fairness")):
        table += [
            (
                f"fairness: sends from B's 202 to B's last ({fair['backend']})",
                f"{fair['sends_from_b_queued_to_b_last']} (A {fair['bulk']} queued first)",
                "<= 20",
            ),
            (
                f"fairness: sends between C's OTP 202 and its send ({fair['backend']})",
                f"{fair['sends_between_c_queued_and_c']}",
                "<= 1",
            ),
        ]
    for steps in _list(results.get("dispatch_steps")):
        table.append(
            (
                f"dispatch steps: claim, confirm ({steps['backend']})",
                (
                    f"{steps['claim_ms']} ms, {steps['confirm_ms']} ms "
                    f"(bare transaction {steps['bare_ms']} ms)"
                ),
                "-",
            )
        )
    return table


def _webhook_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The rows of bench.webhooks: latency, the ingest cost of an endpoint, the drain."""
    table: list[tuple[str, str, str]] = []
    for hooks in _list(results.get("webhooks")):
        backend, lat, cost, drain = (hooks[k] for k in ("backend", "latency", "ingest", "drain"))
        table += [
            (
                f"webhook: callback -> signed POST ({backend})",
                (
                    f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms (raw POST p50 "
                    f"{lat['baseline']['p50_ms']} ms)"
                ),
                "p50 < 20 ms",
            ),
            (
                f"webhook: callback ingest, endpoint / none ({backend})",
                (
                    f"{cost['ratio']:.3f} ({cost['with_per_second']:.0f}/s vs "
                    f"{cost['without_per_second']:.0f}/s)"
                ),
                ">= 0.8",
            ),
            (
                f"webhook: backlog drain, one process ({backend})",
                f"{drain['per_second']}/s ({drain['arrived']}/{drain['count']})",
                ">= 500/s",
            ),
        ]
    return table


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows for the table."""
    table: list[tuple[str, str, str]] = []
    for ingest in _list(results.get("callback_ingest")):
        backend = ingest["backend"]
        target = "0.5" if backend == "sqlite" else "0.4"
        table += [
            (
                f"callback ingest / bare Starlette ({backend})",
                (
                    f"{ingest['ratio']:.3f} ({ingest['ours_per_second']:.0f}/s vs "
                    f"{ingest['bare_per_second']:.0f}/s)"
                ),
                f">= {target}",
            ),
            (
                f"  same endpoint, no database ({backend})",
                (
                    f"{ingest['ceiling_ratio']:.3f} ({ingest['ceiling_per_second']:.0f}/s): "
                    "the ceiling"
                ),
                "-",
            ),
            (
                f"callback ack p99 at half peak ({backend})",
                f"{ingest['half_peak_p99_ms']} ms",
                "< 25 ms",
            ),
            (
                f"callback burst {ingest['burst_count']} @256 ({backend})",
                f"max {ingest['burst_max_ms']} ms, all 200: {ingest['burst_all_200']}",
                "all < 5 s",
            ),
            (f"callbacks applied ({backend})", f"{ingest['applied']}/{ingest['sent']}", "all"),
            (
                f"peak RSS tracker serve ({backend})",
                f"{ingest['peak_rss_mb_ours']} MiB (bare {ingest['peak_rss_mb_bare']} MiB)",
                "-",
            ),
        ]
    for batch in _list(results.get("batch_accept")):
        table.append(
            (
                f"batch accept / raw insert ({batch['backend']})",
                f"{batch['ratio']:.3f} (API {batch['api_seconds']:.2f} s)",
                ">= 0.5, API < 2 s",
            )
        )
    pacing = results.get("pacing")
    if isinstance(pacing, dict) and "ratio" in pacing:
        table.append(
            (
                "pacing achieved / configured",
                (
                    f"{pacing['ratio']:.4f} ({pacing['achieved_per_minute']}/min of "
                    f"{pacing['configured_per_minute']}, {pacing['throttled_by_limit']} 429s)"
                ),
                ">= 0.98, 0 429s",
            )
        )
    for sweep in _list(results.get("expiry_sweep")):
        table.append(
            (
                f"expiry sweep {sweep['expiring']} under callbacks @32 ({sweep['backend']})",
                (
                    f"ack p99 {sweep['ack_p99_ms']} ms (no sweep {sweep['quiet']['p99_ms']} ms), "
                    f"spooled {sweep['spooled']}, "
                    f"sweep {sweep['sweep_seconds']} s, longest txn "
                    f"{sweep['longest_transaction_ms']} ms"
                ),
                "p99 < 50 ms, 0 spooled",
            )
        )
    for query in _list(results.get("query_latency")):
        table.append(
            (
                f"query p99 {query['name']} ({query['rows']} rows)",
                f"{query['p99_ms']} ms (driver baseline {query['baseline_p99_ms']} ms)",
                query.get("target", "-"),
            )
        )
    for page in _list(results.get("dashboard")):
        table.append(
            (
                f"dashboard p99 {page['name']} ({page['rows']} rows)",
                f"{page['p99_ms']} ms (p50 {page['p50_ms']} ms)",
                page.get("target", "-"),
            )
        )
    table += _dispatch_rows(results)
    table += _webhook_rows(results)
    table += _retention_rows(results)
    for name, value in results.items():
        if isinstance(value, dict) and "error" in value:
            table.append((name, value["error"], "-"))
    return table


def _retention_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The retention job's rate, and the callbacks' ack while it runs."""
    return [
        (
            f"retention of {run['messages']} under callbacks @32 ({run['backend']})",
            (
                f"{run['rows_per_second']} rows/s{'' if run['finished'] else ' (cut short)'}, "
                f"ack p99 {run['ack_p99_ms']} ms (none running {run['quiet']['p99_ms']} ms), "
                f"spooled {run['spooled']}"
            ),
            "p99 < 50 ms, 0 spooled",
        )
        for run in _list(results.get("retention"))
    ]


def _list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and "error" not in value:
        return list(value.get("results", [value]))
    return []


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts; figures not judged")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "all.json")
    args = parser.parse_args()
    quick = ["--quick"] if args.quick else []
    plan = [
        ("callback_ingest", quick),
        ("batch_accept", ["--size", "1000", "--repeat", "1"] if args.quick else []),
        ("pacing", ["--seconds", "10"] if args.quick else []),
        ("expiry_sweep", quick),
        ("query_latency", quick),
        ("dashboard", quick),
        ("dispatch_latency", quick),
        ("fairness", quick),
        ("dispatch_steps", quick),
        ("webhooks", quick),
        ("retention", quick or RETENTION_ARGS),
    ]
    deadline = time.monotonic() + TIME_LIMIT_SECONDS
    results: dict[str, Any] = {}
    for module, script_args in plan:
        remaining = deadline - time.monotonic()
        if remaining < MIN_SCRIPT_SECONDS:
            results[module] = {"error": f"not run: the {TIME_LIMIT_SECONDS} s budget ran out"}
            continue
        results[module] = run_script(module, script_args, timeout=remaining)
    table = rows(results)
    width = max(len(r[0]) for r in table)
    print(f"{'figure':<{width}}  {'value':<52}  target")
    for figure, value, target in table:
        print(f"{figure:<{width}}  {value:<52}  {target}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"quick": args.quick, **results}, indent=2, default=str))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
