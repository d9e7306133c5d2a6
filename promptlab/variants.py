"""Variant specs of `fusionrec prompts compare`: which prompt set, on which backend and model.

    NAME                  prompt set NAME (a folder under prompts/), the configured backend
    NAME@off|local|hosted prompt set NAME on that backend
    NAME@hosted:MODEL     ... on the hosted endpoint with this model name
    NAME@PATH.gguf        ... on the local backend with this GGUF file
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BACKENDS = ("off", "local", "hosted")


class VariantError(ValueError):
    pass


@dataclass(frozen=True)
class Variant:
    label: str  # the spec as written (shown in reports)
    prompt_set: str
    backend: str | None = None  # None: the configured backend
    model_path: str | None = None
    model: str | None = None  # hosted model name

    def llm_overrides(self, default_backend: str) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend or default_backend}
        if self.model_path:
            out["model_path"] = self.model_path
        if self.model:
            out["model"] = self.model
        return out


def parse_variant(spec: str) -> Variant:
    spec = spec.strip()
    name, _, target = spec.partition("@")
    if not name or "/" in name or name.startswith("."):
        raise VariantError(f"variant '{spec}': the part before '@' must be a prompt set name (a folder under prompts/)")
    if not target:
        return Variant(spec, name)
    if target in BACKENDS:
        return Variant(spec, name, backend=target)
    if target.startswith("hosted:") and len(target) > 7:
        return Variant(spec, name, backend="hosted", model=target[7:])
    if target.endswith(".gguf") or "/" in target:
        return Variant(spec, name, backend="local", model_path=target)
    raise VariantError(f"variant '{spec}': after '@' put one of {list(BACKENDS)}, 'hosted:MODEL' or a .gguf path")
