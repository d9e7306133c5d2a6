"""Prompt sets: folders of Jinja2 template files under prompts/. A variant folder only holds the files it
changes; the rest come from prompts/default. Each template declares its variables in a first-line
comment (``{# variables: a, b #}``); rendering uses StrictUndefined, so a missing or misspelt variable is
an error, never an empty string in a prompt."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from jinja2 import meta

TEMPLATES = ("system", "rerank", "intent", "explain", "tools")
_HEADER = re.compile(r"^\{#\s*variables:(.*?)#\}\s*\n", re.S)
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                          trim_blocks=True, lstrip_blocks=True)


class PromptError(ValueError):
    pass


@dataclass
class PromptSet:
    name: str
    texts: dict[str, str]  # template sources (without the variables header)
    sources: dict[str, Path]
    variables: dict[str, set[str]] = field(default_factory=dict)
    root: Path = Path("prompts")  # the folder of prompt sets (exemplar files live beside the templates)
    _compiled: dict[str, jinja2.Template] = field(default_factory=dict, repr=False)

    def render(self, template: str, **values: object) -> str:
        missing = self.variables[template] - set(values)
        if missing:
            raise PromptError(f"prompt '{template}' of set '{self.name}' needs {sorted(missing)}")
        if template not in self._compiled:
            self._compiled[template] = _ENV.from_string(self.texts[template])
        try:
            return self._compiled[template].render(**values)
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt '{template}' of set '{self.name}': {exc}") from exc

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
        try:
            used = meta.find_undeclared_variables(_ENV.parse(raw))
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"{path}, line {exc.lineno}: {exc.message}") from exc
        if used - declared:
            raise PromptError(f"{path}: uses {sorted(used - declared)} but declares only {sorted(declared)}")
        texts[template], sources[template], variables[template] = raw.strip() + "\n", path, declared
    return PromptSet(name=name, texts=texts, sources=sources, variables=variables, root=prompts_dir)
