"""Prompt sets: folders of template files under prompts/. A variant folder only holds the files it
changes; the rest come from prompts/default. Templates use {name} placeholders (literal braces are
doubled) and list their variables in a first-line comment."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATES = ("system", "rerank", "intent", "explain", "tools")
_HEADER = re.compile(r"^<!--\s*variables:(.*?)-->\s*\n", re.S)


class PromptError(ValueError):
    pass


@dataclass
class PromptSet:
    name: str
    texts: dict[str, str]
    sources: dict[str, Path]
    variables: dict[str, set[str]] = field(default_factory=dict)

    def render(self, template: str, **values: object) -> str:
        text = self.texts[template]
        missing = self.variables[template] - set(values)
        if missing:
            raise PromptError(f"prompt '{template}' of set '{self.name}' needs {sorted(missing)}")
        return text.format_map({k: str(v) for k, v in values.items()})

    def hashes(self) -> dict[str, str]:
        return {k: hashlib.sha256(v.encode()).hexdigest()[:12] for k, v in self.texts.items()}


def load_prompt_set(prompts_dir: Path, name: str = "default") -> PromptSet:
    folder = prompts_dir / name
    if not folder.is_dir():
        available = sorted(p.name for p in prompts_dir.iterdir() if p.is_dir())
        raise PromptError(f"unknown prompt set '{name}'; available: {available}")
    texts, sources, variables = {}, {}, {}
    for template in TEMPLATES:
        path = folder / f"{template}.md"
        if not path.is_file():
            path = prompts_dir / "default" / f"{template}.md"
        raw = path.read_text(encoding="utf-8")
        match = _HEADER.match(raw)
        declared = set()
        if match:
            declared = {v.strip() for v in match.group(1).split(",") if v.strip() and v.strip() != "(none)"}
            raw = raw[match.end():]
        used = {m for m in re.findall(r"(?<!\{)\{([a-z_]+)\}(?!\})", raw)}
        if used - declared:
            raise PromptError(f"{path}: uses {sorted(used - declared)} but declares only {sorted(declared)}")
        texts[template], sources[template], variables[template] = raw.strip() + "\n", path, used
    return PromptSet(name=name, texts=texts, sources=sources, variables=variables)
