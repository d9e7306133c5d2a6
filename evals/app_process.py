"""A real `python app.py` process on 127.0.0.1 with its own home: used by the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> int | None:
    """End a server process without ever raising: terminate, wait up to ``grace_s``, then kill.

    A server busy with a request (llama.cpp generating, uvicorn draining) may not exit on SIGTERM in
    time on a loaded machine; the caller's test has already passed or failed by then, so teardown
    must not turn that into an error. Returns the exit code (None if it could not be reaped).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        return None


class AppProcess:
    """Starts the app (uvicorn + FastAPI + Gradio) with ``env`` on a free port and waits for /healthz.

    The app builds its index on first start in ``home``, so the first start on a new home takes longer.
    """

    def __init__(self, home: Path, env: dict[str, str] | None = None, ready_timeout_s: float = 900.0):
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / f"app-{self.port}.log"
        full_env = {**os.environ, "FUSIONREC_HOME": str(home), "FUSIONREC_PORT": str(self.port), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=full_env,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        self.wait_ready(ready_timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the app was not ready within {timeout_s:.0f}s:\n{self.log.read_text()[-3000:]}")

    def sessions_db(self, dataset: str = "demo-s7") -> Path:
        return self.home / "sessions" / f"{dataset}.sqlite"

    def stop(self, kill: bool = False) -> None:
        """Terminate (or kill, to simulate a crash) and wait for the process to end; never raises."""
        if kill and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        stop_process(self.proc)
