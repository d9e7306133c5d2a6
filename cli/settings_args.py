"""Settings for one command: the file/environment configuration plus the command-line overrides."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from config.settings import Settings


def settings_from_args(args: argparse.Namespace, backend: str | None = None) -> Settings:
    """Apply ``--data``, ``--home``, ``--llm``/``backend``, ``--prompt-set`` and ``--blend-weight`` when given."""
    overrides: dict[str, Any] = {}
    if getattr(args, "data", None):
        overrides["data"] = args.data
    if getattr(args, "home", None):
        overrides["home"] = Path(args.home)
    settings = Settings(**overrides)
    llm: dict[str, Any] = {}
    if backend or getattr(args, "llm", None):
        llm["backend"] = backend or args.llm
    if getattr(args, "blend_weight", None) is not None:
        llm["blend_weight"] = args.blend_weight
    update: dict[str, Any] = {"llm": settings.llm.model_copy(update=llm)} if llm else {}
    if getattr(args, "prompt_set", None):
        update["prompt_set"] = args.prompt_set
    return settings.model_copy(update=update) if update else settings
