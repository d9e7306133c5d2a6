"""Strict text for request bodies, shared by the JSON and the OpenAI-compatible API: a lone surrogate or a
control character is a 422 naming the field, never a 500 when the text is stored."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from catalog.sanitize import text_problem


def clean_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


CleanText = Annotated[str, AfterValidator(clean_text)]
