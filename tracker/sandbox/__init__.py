"""The KIMISMS sandbox: a faithful imitation of the provider, with faults on demand.

``create_sandbox_app`` builds it, ``running_sandbox`` serves it in a thread for
tests and benchmarks, ``serve`` runs it in the foreground; ``faults`` holds the
magic-number table (also in ``docs/sandbox.md``).
"""

from tracker.sandbox.app import create_sandbox_app
from tracker.sandbox.config import SandboxConfig
from tracker.sandbox.faults import MAGIC_NUMBERS
from tracker.sandbox.server import running_app, running_sandbox, serve

__all__ = [
    "MAGIC_NUMBERS",
    "SandboxConfig",
    "create_sandbox_app",
    "running_app",
    "running_sandbox",
    "serve",
]
