"""identity.json-style placeholders in a dataset ({{name}}, {{author}}): find them, write a filled copy.

LLaMA-Factory's data/identity.json (and v1_sft_demo.jsonl) answer "Who are you?" with "I am
{{name}}, an AI assistant developed by {{author}}": filling them with the bot's name and its maker
is the usual first step of a persona bot. The values replace the placeholders inside the records'
strings (never in the raw file text, where a value holding a quote would break the JSON), and the
copy is written whole or not at all, beside the original and never over it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from core.data import read_records
from core.errors import UserInputError
from core.paths import path_errors, shown_path, write_text_atomically

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _strings(value: Any):
    """Every string inside a record (values, not keys), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _filled(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), value)
    if isinstance(value, dict):
        return {key: _filled(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, values) for item in value]
    return value


def find_placeholders(path: str | Path) -> dict[str, int]:
    """Placeholder name -> how many times it occurs in the dataset's strings, most frequent first."""
    counts = Counter(
        match.group(1)
        for _, record in read_records(Path(path))
        for text in _strings(record)
        for match in PLACEHOLDER.finditer(text)
    )
    return dict(counts.most_common())


def filled_path(path: str | Path) -> Path:
    """identity.json -> identity.filled.json, beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.filled{path.suffix}")


def fill_placeholders(path: str | Path, values: dict[str, str], out: str | Path | None = None) -> Path:
    """Write a copy of the dataset with every placeholder replaced by its value; return the copy's path.

    Every placeholder the file holds needs a non-empty value (a persona that says "{{author}}" is
    worse than none). `out` defaults to filled_path(path); it is never the original.
    """
    path = Path(path)
    out = Path(out) if out is not None else filled_path(path)
    if out.resolve() == path.resolve():
        raise UserInputError(f"The filled copy must not overwrite the original {shown_path(path)}: choose another name")
    found = find_placeholders(path)
    if not found:
        raise UserInputError(f"{path.name} holds no {{{{name}}}}-style placeholders: nothing to fill")
    values = {name: str(value).strip() for name, value in values.items() if str(value or "").strip()}
    missing = [name for name in found if name not in values]
    if missing:
        shown = ", ".join(f"{{{{{name}}}}}" for name in missing)
        raise UserInputError(f"{path.name}: give a value for every placeholder; missing: {shown}")
    records = [_filled(record, values) for _, record in read_records(path)]
    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    else:
        text = json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    with path_errors("Filled copy", out):
        write_text_atomically(out, text)
    return out
