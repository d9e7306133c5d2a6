"""Catalog text is untrusted: sentences that address a model ("ignore previous instructions", "you are
now...", "print your system prompt") are quarantined — kept in the raw catalog for people to see, but
left out of what is embedded and of what goes into prompts, so they can change neither the ranking
nor the model's behaviour."""

from __future__ import annotations

import re

_INSTRUCTION = re.compile(
    r"(ignore (all |any |the )?(previous|prior|above|earlier) (instructions|prompts?|rules)|"
    r"disregard (all |any |the )?(previous|prior|above) |system prompt|system:|assistant:|"
    r"you are now|admin mode|developer mode|jailbreak|reveal (every|all|the)|"
    r"rank (this|me) (item )?first|print your|repeat your|as an ai|new instructions)",
    re.I,
)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")


def has_instructions(text: str) -> bool:
    return bool(_INSTRUCTION.search(text or ""))


def strip_instructions(text: str) -> str:
    """The text without the sentences that look like instructions to a model."""
    if not text or not has_instructions(text):
        return text
    kept = [s.strip() for s in _SENTENCE.findall(text) if s.strip() and not _INSTRUCTION.search(s)]
    return " ".join(kept)
