"""Catalog text is untrusted: sentences that address a model ("ignore previous instructions", "you are
now...", "print your system prompt") are quarantined — kept in the raw catalog for people to see, but
left out of what is embedded and of what goes into prompts, so they can change neither the ranking
nor the model's behaviour. Text from callers must also be storable: no lone surrogates or control characters."""

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


# Lone surrogates cannot be stored or encoded as UTF-8; NUL and other control characters (all but tab,
# newline and carriage return) have no place in a message and confuse logs, terminals and SQLite tools.
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be accepted as user input (a lone surrogate, a control character), or None."""
    bad = _BAD_TEXT.search(text)
    if bad is None:
        return None
    code = ord(bad.group())
    kind = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
    return f"contains {kind} (U+{code:04X}) at position {bad.start()}"


FLAG_INSTRUCTIONS = "instructions_in_text"


def flagged_items(item_ids: list[str], titles: list[str], descriptions: list[str]) -> list[str]:
    """The ids of the items whose title or description holds instruction-like sentences."""
    return [str(i) for i, t, d in zip(item_ids, titles, descriptions, strict=True)
            if has_instructions(t) or has_instructions(d)]
