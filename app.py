"""Builds the app from settings: one FastAPI server with the Gradio UI at / and the APIs under /v1."""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from fastapi import FastAPI  # noqa: E402

from config.logs import configure_logging  # noqa: E402
from config.settings import Settings  # noqa: E402
from web.api import BodyLimit, api_router, install_error_handlers  # noqa: E402
from web.events_api import events_router  # noqa: E402
from web.items_api import items_router  # noqa: E402
from web.openai_api import openai_router  # noqa: E402
from web.services import Services  # noqa: E402
from web.sync import LiveSyncMiddleware  # noqa: E402


def build_app(settings: Settings, services: Services | None = None) -> FastAPI:
    import gradio as gr

    from promptlab.tab import LabServices, build_prompt_lab_tab
    from web.ui import LOGIN_MESSAGE, build_ui, login

    demo = settings.ui.demo_mode(settings.api)  # ConfigError before anything is loaded
    services = services or Services.load(settings)
    app = _api_app(settings, services)
    lab = LabServices(services.recommender, services.llm, settings,
                      services.persona_ids(settings.ui.personas) if demo else [], services.llm_error, demo)
    ui = build_ui(services, tabs=[("Prompt lab", lambda: build_prompt_lab_tab(lab))], demo=demo)
    if demo:
        return gr.mount_gradio_app(app, ui, path="/", run_history=False)
    return gr.mount_gradio_app(app, ui, path="/", run_history=False, auth=login(services), auth_message=LOGIN_MESSAGE)


def serve(settings: Settings) -> None:
    import uvicorn

    configure_logging(settings.log_level)
    if settings.worker_count > 1:
        from web.workers import serve_workers

        serve_workers(settings)
        return
    app = build_app(settings)
    logging.getLogger("fusionrec").info("serving on http://%s:%s", settings.host, settings.port)
    # Open browser tabs keep Gradio connections alive: bound the graceful shutdown.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=5)


def worker_app() -> FastAPI:
    """One API worker of ``serve_workers`` (uvicorn calls this in each worker process): the APIs, and the UI
    requests passed on to the UI process."""
    from web.workers import settings_from_parent, ui_upstream

    settings = settings_from_parent(Settings)
    configure_logging(settings.log_level)
    return build_api_app(settings, ui_upstream())


def build_api_app(settings: Settings, ui_upstream: str | None = None, services: Services | None = None) -> FastAPI:
    """The APIs without the Gradio UI; with ``ui_upstream``, every other path is proxied there (web/ui_proxy.py)."""
    from web.ui_proxy import mount_ui_proxy

    services = services or Services.load(settings, build_index_if_missing=False)
    app = _api_app(settings, services)
    if ui_upstream:
        mount_ui_proxy(app, ui_upstream)
    return app


def _api_app(settings: Settings, services: Services) -> FastAPI:
    app = FastAPI(title="fusionrec", version="0.1.0",
                  description="Conversational recommender: fused evidence, LLM rerank, grounded explanations.")
    if services.sync is not None:
        app.add_middleware(LiveSyncMiddleware, sync=services.sync)  # inner: runs after the body limit
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes,
                       read_timeout_s=settings.api.body_read_timeout_s)
    install_error_handlers(app)
    app.include_router(api_router(services))
    app.include_router(events_router(services))
    app.include_router(items_router(services))
    app.include_router(openai_router(services))
    app.state.services = services
    return app


def main_from_parent() -> int:
    """The UI process of ``fusionrec serve --workers N`` (web/workers.py): the whole app on a private port, with the
    parent's settings; it ends when the parent does."""
    import threading
    import time

    from web.workers import settings_from_parent

    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)  # the supervisor is gone (even by kill -9): do not linger on the port

    threading.Thread(target=watch_parent, daemon=True, name="parent-watch").start()
    serve(settings_from_parent(Settings))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags win over the environment and the TOML file; an unknown flag is an error (exit 2 with usage)."""
    parser = argparse.ArgumentParser(prog="app.py", description="Serve the Gradio UI and the APIs.")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve on (default 7860)")
    parser.add_argument("--data", help="'demo', a Last.fm HetRec folder or a generic-format folder")
    parser.add_argument("--home", help="state folder (index, Chroma, sessions)")
    parser.add_argument("--llm", choices=["off", "local", "hosted"], help="LLM backend")
    parser.add_argument("--prompt-set", help="prompt set under prompts/")
    parser.add_argument("--workers", type=int, help="API worker processes (default 1: one process serving the UI and "
                                                    "the APIs; 0 = one per core)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from cli.settings_args import settings_from_args
    from indexing.build import IndexMissing
    from loaders.schema import DataFormatError
    from storage.sessions import SessionDatabaseError
    from web.settings import ConfigError

    args = parse_args(argv)
    try:
        settings = settings_from_args(args).with_overrides(host=args.host, port=args.port, workers=args.workers)
        serve(settings)
    except (SessionDatabaseError, IndexMissing, DataFormatError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line, no traceback
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
