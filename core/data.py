"""Read chat datasets (.json / .jsonl) in alpaca, sharegpt or OpenAI-messages format.

Every format is normalised to a list of conversations, each a list of {"role", "content"} messages
with roles system (optional, first), then user / assistant alternating, ending on assistant. All
problems in a file are collected with their record number (the line number in a .jsonl file) and
raised together, so one pass over a bad file tells the user everything to fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import DATASET_FORMATS
from core.errors import UserInputError
from core.paths import path_errors, shown_path

Message = dict[str, str]
Conversation = list[Message]

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
OPENAI_ROLES = ("system", "user", "assistant")


@dataclass
class Dataset:
    conversations: list[Conversation]
    format: str  # alpaca | sharegpt | openai
    path: str


def eval_count(num_examples: int, val_size: float) -> int:
    """How many examples the trainer holds out for eval loss: ceil(n * val_size), and never all of
    them (something must be left to train on). The page's step count uses the same number."""
    return min(math.ceil(num_examples * val_size), num_examples - 1) if val_size > 0 else 0


def _read_records(path: Path) -> list[tuple[str, Any]]:
    """(label, record) pairs; the label says where the record is ('line 7', 'record 3')."""
    with path_errors("Dataset file", path):
        if not path.is_file():
            raise UserInputError(f"Dataset file not found: {shown_path(path)}")
        if path.suffix.lower() not in (".json", ".jsonl"):
            raise UserInputError(f"{path.name}: dataset must be a .json or .jsonl file, got '{path.suffix}'")
        raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1  # where to look in an editor
        raise UserInputError(
            f"{path.name} is not UTF-8 text (line {line}: bad byte 0x{raw[err.start]:02x} "
            f"at offset {err.start}); save it as UTF-8"
        ) from None
    if not text.strip():
        raise UserInputError(f"{path.name} is empty: no examples to train on")
    if path.suffix.lower() == ".jsonl":
        records, problems = [], []
        # split("\n"), not splitlines(): a JSON string may hold a raw U+2028 or U+0085 (json.dumps
        # with ensure_ascii=False writes them), which splitlines() would wrongly treat as line ends.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as err:
                problems.append(f"line {number}: not valid JSON ({err.msg} at column {err.colno})")
        if problems:
            raise UserInputError(f"{path.name}: {len(problems)} line(s) are not JSON:", problems)
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserInputError(
            f"{path.name}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise UserInputError(f"{path.name}: expected a JSON list of examples, got {type(data).__name__}")
    return [(f"record {number}", record) for number, record in enumerate(data, start=1)]


def detect_format(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    if "messages" in record:
        return "openai"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record or "output" in record:
        return "alpaca"
    return None


def _text(record: dict, key: str, where: str, problems: list[str], required: bool = True) -> str:
    value = record.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        problems.append(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
        return ""
    if required and not value.strip():
        problems.append(f"{where}: field '{key}' is missing or empty")
    return value


def _from_alpaca(record: dict, where: str, problems: list[str]) -> Conversation:
    conversation: Conversation = []
    system = _text(record, "system", where, problems, required=False)
    if system.strip():
        conversation.append({"role": "system", "content": system})
    history = record.get("history") or []
    if not isinstance(history, list):
        problems.append(f"{where}: field 'history' must be a list of [user, assistant] pairs")
        history = []
    for turn, pair in enumerate(history, start=1):
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(t, str) and t.strip() for t in pair)
        ):
            problems.append(f"{where}: history[{turn}] must be a pair of non-empty strings [user, assistant]")
            continue
        conversation += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    instruction = _text(record, "instruction", where, problems)
    extra = _text(record, "input", where, problems, required=False)
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    conversation.append({"role": "user", "content": prompt})
    conversation.append({"role": "assistant", "content": _text(record, "output", where, problems)})
    return conversation


def _from_turns(
    record: dict, where: str, problems: list[str], key: str, role_key: str, content_key: str, roles: dict[str, str]
) -> Conversation:
    turns = record.get(key)
    if not isinstance(turns, list) or not turns:
        problems.append(f"{where}: field '{key}' must be a non-empty list of turns")
        return []
    conversation: Conversation = []
    system = record.get("system")
    if isinstance(system, str) and system.strip():
        conversation.append({"role": "system", "content": system})
    for index, turn in enumerate(turns, start=1):
        at = f"{where}, {key}[{index}]"
        if not isinstance(turn, dict):
            problems.append(f"{at}: each turn must be an object with '{role_key}' and '{content_key}'")
            continue
        role = roles.get(str(turn.get(role_key, "")).strip().lower())
        if role is None:
            problems.append(f"{at}: '{role_key}' must be one of {', '.join(sorted(roles))}; got {turn.get(role_key)!r}")
            continue
        content = turn.get(content_key)
        if not isinstance(content, str) or not content.strip():
            what = "empty assistant reply" if role == "assistant" else f"'{content_key}' is missing or empty"
            problems.append(f"{at}: {what}")
            continue
        conversation.append({"role": role, "content": content})
    return conversation


def _check_order(conversation: Conversation, where: str, problems: list[str]) -> None:
    """system? then user/assistant alternating, starting with user and ending with assistant."""
    roles = [m["role"] for m in conversation]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if not roles:
        return
    expected = ["user", "assistant"] * (len(roles) // 2 + 1)
    for index, (role, want) in enumerate(zip(roles, expected), start=1):
        if role != want:
            problems.append(
                f"{where}: roles out of order: turn {index} is '{role}', expected '{want}' "
                f"(system first, then user and assistant alternating)"
            )
            return
    if roles[-1] != "assistant":
        problems.append(f"{where}: the last turn must be an assistant reply (nothing to train on)")


def normalise(record: Any, fmt: str, where: str, problems: list[str]) -> Conversation:
    if not isinstance(record, dict):
        problems.append(f"{where}: each example must be a JSON object, got {type(record).__name__}")
        return []
    before = len(problems)
    if fmt == "alpaca":
        conversation = _from_alpaca(record, where, problems)
    elif fmt == "sharegpt":
        conversation = _from_turns(record, where, problems, "conversations", "from", "value", SHAREGPT_ROLES)
    else:
        conversation = _from_turns(record, where, problems, "messages", "role", "content", {r: r for r in OPENAI_ROLES})
    if len(problems) == before:
        _check_order(conversation, where, problems)
    return conversation


def load_dataset(path: str | Path, fmt: str = "auto") -> Dataset:
    """Load and validate a dataset file; raise UserInputError listing every bad record."""
    path = Path(path)
    if fmt not in DATASET_FORMATS:
        raise UserInputError(f"Unknown dataset format {fmt!r}: use one of {', '.join(DATASET_FORMATS)}")
    records = _read_records(path)
    if not records:
        raise UserInputError(f"{path.name} holds no examples")
    if fmt == "auto":
        fmt = next((f for f in (detect_format(r) for _, r in records) if f), None)
        if fmt is None:
            raise UserInputError(
                f"{path.name}: cannot tell the format. Expected keys 'messages' (OpenAI), "
                f"'conversations' (sharegpt) or 'instruction'/'output' (alpaca) in {records[0][0]}"
            )
    problems: list[str] = []
    conversations = [normalise(record, fmt, where, problems) for where, record in records]
    if problems:
        raise UserInputError(f"{path.name} ({fmt} format): {len(problems)} problem(s):", problems)
    return Dataset(conversations=conversations, format=fmt, path=str(path))
