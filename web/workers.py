"""Several API worker processes on one port (``fusionrec serve --workers N``), and the UI in one more process.

Gradio keeps its event queue and each browser session's state in the process that serves it, so the UI
cannot be spread over workers that share a listening socket. The layout is therefore:

- the UI process: the whole app (UI and APIs) on a private loopback port, started first; it builds the
  index if it is missing, so the workers only load it;
- N API workers (uvicorn's process manager, which restarts a worker that dies) on the public port: the
  APIs, and every other path passed on, streamed, to the UI process (web/ui_proxy.py).

Every process loads the same index folder; its large arrays are memory-mapped, so the page cache holds one
copy (retrieval/arrays.py). Sessions, events and catalog edits are shared through the database, and each
process applies what the others stored before it answers (indexing/live_sync.py). Settings travel to the
children as JSON in one environment variable, so flags given to the parent hold in every process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr

SETTINGS_ENV = "FUSIONREC_SERVE_SETTINGS"
UI_ENV = "FUSIONREC_SERVE_UI"
log = logging.getLogger("fusionrec.workers")
S = TypeVar("S", bound=BaseModel)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def settings_json(settings: BaseModel) -> str:
    """The resolved settings (flags, environment, file), secrets included, for a child process."""
    return json.dumps(_plain(settings))


def settings_from_parent(settings_class: type[S]) -> S:
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: worker_app is started by `fusionrec serve --workers N`")
    return settings_class(**json.loads(raw))  # explicit values win over the environment and the file


def ui_upstream() -> str | None:
    return os.environ.get(UI_ENV) or None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ui_process(settings: Any, ready_timeout_s: float = 1800.0) -> tuple[subprocess.Popen[bytes], str]:
    """The whole app in one process on a private loopback port; returns once it answers /healthz."""
    port = _free_port()
    child = settings.model_copy(update={"host": "127.0.0.1", "port": port, "workers": 1})
    env = {**os.environ, SETTINGS_ENV: settings_json(child)}
    code = "import sys, app; sys.exit(app.main_from_parent())"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=Path(__file__).resolve().parent.parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the UI process exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the UI process was not ready within {ready_timeout_s:.0f} s")


def serve_workers(settings: Any) -> None:
    """``settings``: the top-level settings object (config/settings.py)."""
    import uvicorn

    n = settings.worker_count
    ui, url = start_ui_process(settings)
    log.info("UI process %s ready on %s; starting %d API workers on http://%s:%s", ui.pid, url, n,
             settings.host, settings.port)
    os.environ[SETTINGS_ENV] = settings_json(settings)
    os.environ[UI_ENV] = url
    try:
        uvicorn.run("app:worker_app", factory=True, workers=n, host=settings.host, port=settings.port,
                    log_level="warning", timeout_graceful_shutdown=5)
    finally:
        ui.terminate()
        try:
            ui.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ui.kill()
