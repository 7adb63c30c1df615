"""Read chat datasets (.json / .jsonl) in alpaca, sharegpt or OpenAI-messages format.

Every format is normalised to a list of conversations, each a list of {"role", "content"} messages
with roles system (optional, first), then user / assistant alternating, ending on assistant; an
assistant message may call tools, and the tool results ("tool" messages) follow it. All problems in
a file are collected with their record number (the line number in a .jsonl file) and raised
together, so one pass over a bad file tells the user everything to fix. `load_dataset` reads a file
whole; a `DatasetStream` reads and checks it chunk by chunk as it is iterated, the same way.

A message is the OpenAI / Hugging Face chat-template shape, so that a conversation written back as
{"messages": [...]} (core.augment) reads in again unchanged:
  role         system | user | assistant | tool
  content      str: a list of text parts ({"type": "text", "text" or "value": ...}) is joined
  tool_calls   assistant only, optional: [{"type": "function", "function": {"name", "arguments": dict}}],
               from OpenAI `tool_calls`, sharegpt `function_call` turns, or LLaMA-Factory v1 `tool_call` parts
  loss_weight  assistant only, present only as 0: the message is context, not trained
  tools        on a conversation's first message only: the tool definitions (the record's top-level
               `tools`, a list or its JSON text), [{"type": "function", "function": {...}}]. Carried
               by a message so that every list operation on a conversation (slicing, copying,
               prepending a system prompt) keeps them; core.template hands them to the chat template.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import DATASET_FORMATS
from core.errors import UserInputError
from core.paths import path_errors, shown_path

Message = dict[str, Any]  # role, content (str), and optionally tool_calls, loss_weight, tools: see above
Conversation = list[Message]

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",  # LLaMA-Factory: the value is the call(s) as JSON
    "observation": "tool",  # LLaMA-Factory: a tool's result
}
OPENAI_ROLES = ("system", "user", "assistant", "tool")
TOOLS = "tools"  # the first message's key that holds its conversation's tool definitions
TEXT_PART_KEYS = ("text", "value")  # OpenAI's text part, LLaMA-Factory v1's
LOSS_WEIGHT_KEYS = ("loss_weight", "weight")  # LLaMA-Factory v1's, OpenAI fine-tuning's
# Records a DatasetStream parses and checks at a time: the tokenizer's chunk (core.template.ENCODE_CHUNK),
# so that reading one chunk overlaps tokenizing the one before.
READ_CHUNK = 2048


@dataclass
class Dataset:
    conversations: list[Conversation]
    format: str  # alpaca | sharegpt | openai
    path: str


class NotJsonError(UserInputError):
    """The file, or some of its lines, is not JSON: no record was checked (core.dataset_info then
    reports this rather than what the records that did parse lack)."""


def eval_count(num_examples: int, val_size: float) -> int:
    """How many examples the trainer holds out for eval loss: ceil(n * val_size), and never all of
    them (something must be left to train on). The page's step count uses the same number."""
    return min(math.ceil(num_examples * val_size), num_examples - 1) if val_size > 0 else 0


def train_count(num_examples: int, val_size: float) -> int:
    """How many examples are left to train on (what the plan's step count is made from)."""
    return num_examples - eval_count(num_examples, val_size)


def _entries(path: Path) -> tuple[list[tuple[str, Any]], bool]:
    """(label, entry) of every record in the file, and whether the entries are JSON text still to
    parse (a .jsonl file's lines) or records already parsed (a .json file, parsed whole). The label
    says where the record is ('line 7', 'record 3')."""
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
        # split("\n"), not splitlines(): a JSON string may hold a raw U+2028 or U+0085 (json.dumps
        # with ensure_ascii=False writes them), which splitlines() would wrongly treat as line ends.
        lines = enumerate(text.split("\n"), start=1)
        return [(f"line {number}", line) for number, line in lines if line.strip()], True
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise NotJsonError(
            f"{path.name}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise UserInputError(f"{path.name}: expected a JSON list of examples, got {type(data).__name__}")
    return [(f"record {number}", record) for number, record in enumerate(data, start=1)], False


def _parsed(entries: list[tuple[str, Any]], lines: bool, problems: list[str]) -> Iterator[tuple[str, Any]]:
    """(label, record) of each entry that is JSON; a line that is not goes to `problems`."""
    if not lines:
        yield from entries
        return
    for label, line in entries:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{label}: not valid JSON ({err.msg} at column {err.colno})")
            continue
        yield label, record


def _not_json(name: str, problems: list[str]) -> NotJsonError:
    return NotJsonError(f"{name}: {len(problems)} line(s) are not JSON:", problems)


def read_records(path: Path) -> list[tuple[str, Any]]:
    """(label, record) pairs; the label says where the record is ('line 7', 'record 3')."""
    problems: list[str] = []
    records = list(_parsed(*_entries(path), problems))
    if problems:
        raise _not_json(path.name, problems)
    return records


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


def _parse_json(value: Any, what: str, at: str, problems: list[str]) -> Any:
    """`value` itself, or the JSON a string holds (LLaMA-Factory writes tools and calls as JSON text)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        problems.append(f"{at}: {what} is not valid JSON ({err.msg} at column {err.colno})")
        return None


def _tool_call(value: Any, at: str, problems: list[str]) -> dict[str, Any] | None:
    """One call in the chat templates' shape, from {"name", "arguments"} or OpenAI's
    {"type": "function", "function": {"name", "arguments"}} (arguments a dict or its JSON text)."""
    call = value.get("function") if isinstance(value, dict) and isinstance(value.get("function"), dict) else value
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"].strip():
        problems.append(f'{at}: a tool call must be an object with a "name" and "arguments", got {value!r:.80}')
        return None
    what = f"the arguments of tool call {call['name']!r}"
    arguments = _parse_json(call.get("arguments") or {}, what, at, problems)  # absent / null / "": no arguments
    if not isinstance(arguments, dict):
        if arguments is not None:  # None: _parse_json said why
            problems.append(f"{at}: {what} must be a JSON object")
        return None
    shaped: dict[str, Any] = {"type": "function", "function": {"name": call["name"], "arguments": arguments}}
    if isinstance(value.get("id"), str):
        shaped["id"] = value["id"]  # some templates pair results with calls by id
    return shaped


def _tool_calls(value: Any, at: str, problems: list[str]) -> list[dict[str, Any]]:
    """A call or a list of calls (JSON text or parsed); [] after a problem."""
    value = _parse_json(value, "the tool call", at, problems)
    if value is None:
        return []
    calls = [_tool_call(v, at, problems) for v in (value if isinstance(value, list) else [value])]
    return [] if None in calls else calls


def _tools(value: Any, where: str, problems: list[str]) -> list[dict[str, Any]]:
    """A record's tool definitions (a JSON string or a list; "[]" and absent mean none), each in the
    {"type": "function", "function": {...}} shape chat templates are written for."""
    value = _parse_json(value, "field 'tools'", where, problems) if value not in (None, "") else []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        if value is not None:
            problems.append(f"{where}: field 'tools' must be a list of tool definitions, got {type(value).__name__}")
        return []
    tools = []
    for number, tool in enumerate(value, start=1):
        function = tool.get("function") if isinstance(tool, dict) else None
        definition = function if isinstance(function, dict) else tool
        if not isinstance(definition, dict) or not isinstance(definition.get("name"), str):
            problems.append(f'{where}: tools[{number}] must be a function definition with a "name"')
            continue
        tools.append({"type": "function", "function": definition})
    return tools


def _content(value: Any, at: str, key: str, problems: list[str]) -> tuple[str, list[dict[str, Any]]] | None:
    """(text, tool calls) of a message's content: a string, or a list of parts whose text parts are
    joined (LLaMA-Factory v1 may also put `tool_call` parts there). None after a problem."""
    if value is None or isinstance(value, str):
        return value or "", []
    if not isinstance(value, list):
        problems.append(f"{at}: '{key}' must be a string or a list of text parts, got {type(value).__name__}")
        return None
    texts, calls = [], []
    for number, part in enumerate(value, start=1):
        kind = part.get("type", "text") if isinstance(part, dict) else None
        text = next((part[k] for k in TEXT_PART_KEYS if isinstance(part.get(k), str)), None) if kind else None
        if kind == "text" and text is not None:
            texts.append(text)
        elif kind == "tool_call" and text is not None:
            calls += _tool_calls(text, at, problems)
        elif kind not in (None, "text", "tool_call"):
            problems.append(
                f"{at}: {key}[{number}] is a {kind!r} part: only text can be trained here (LoRA Tailor tunes "
                f"text chat models); remove the non-text parts"
            )
            return None
        else:
            problems.append(f'{at}: {key}[{number}] must be a part like {{"type": "text", "text": "..."}}')
            return None
    return "".join(texts), calls


def _trained(turn: dict, role: str, at: str, problems: list[str]) -> bool:
    """False when the message says loss_weight 0 (context only). A weight other than 0 or 1 is
    refused rather than rounded: training here is per message, on or off."""
    key = next((k for k in LOSS_WEIGHT_KEYS if k in turn), None)
    if key is None:
        return True
    weight = turn[key]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight not in (0, 1):
        problems.append(
            f"{at}: {key} must be 0 (not trained) or 1 (trained), got {weight!r}: LoRA Tailor trains a "
            f"message or not, it does not weight it"
        )
        return True
    if weight == 1 and role != "assistant":
        problems.append(
            f"{at}: {key} 1 on a {role} message: only assistant messages are trained here "
            f"(train_on_prompt: true trains every token)"
        )
    return weight == 1


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
        if type(turn) is dict and len(turn) == 2:
            # The common turn, exactly {role: a known role, content: non-empty text}: what the checks
            # below would make of it, without them (they cost more than parsing on large files).
            given, text = turn.get(role_key), turn.get(content_key)
            if type(given) is str and given in roles and given != "function_call" and type(text) is str:
                if text and not text.isspace():  # = text.strip(), without copying the text
                    conversation.append({"role": roles[given], "content": text})
                    continue
        at = f"{where}, {key}[{index}]"
        if not isinstance(turn, dict):
            problems.append(f"{at}: each turn must be an object with '{role_key}' and '{content_key}'")
            continue
        given_role = str(turn.get(role_key, "")).strip().lower()
        role = roles.get(given_role)
        if role is None:
            problems.append(f"{at}: '{role_key}' must be one of {', '.join(sorted(roles))}; got {turn.get(role_key)!r}")
            continue
        content = _content(turn.get(content_key), at, content_key, problems)
        if content is None:
            continue
        text, calls = content
        if given_role == "function_call":  # sharegpt: the whole value is the call (or a list of calls)
            text, calls = "", _tool_calls(text, at, problems) if text.strip() else []
        if turn.get("tool_calls"):
            calls += _tool_calls(turn["tool_calls"], at, problems)
        if calls and role != "assistant":
            problems.append(f"{at}: only an assistant message can call tools, not a {role} message")
            continue
        if not text.strip() and not calls:
            what = "empty assistant reply" if role == "assistant" else f"'{content_key}' is missing or empty"
            problems.append(f"{at}: {what}")
            continue
        message: Message = {"role": role, "content": text}
        if calls:
            message["tool_calls"] = calls
        for name in ("name", "tool_call_id"):  # OpenAI tool results name their call; some templates print it
            if role == "tool" and isinstance(turn.get(name), str):
                message[name] = turn[name]
        if not _trained(turn, role, at, problems) and role == "assistant":
            message["loss_weight"] = 0
        conversation.append(message)
    # Also read from the first turn: where the copies core.augment writes ({"messages": [...]}) keep them.
    first = turns[0] if isinstance(turns[0], dict) else {}
    tools = _tools(record.get(TOOLS, first.get(TOOLS)), where, problems)
    if tools and conversation:
        conversation[0][TOOLS] = tools
    return conversation


def conversation_tools(conversation: Conversation) -> list[dict[str, Any]]:
    """The tool definitions a conversation was given ([] for none)."""
    return next((m[TOOLS] for m in conversation if m.get(TOOLS)), [])


def uses_tools(conversation: Conversation) -> bool:
    """Does the conversation define tools or call one (what a chat template must be able to render)?"""
    return any(m.get(TOOLS) or m.get("tool_calls") or m["role"] == "tool" for m in conversation)


def _check_order(conversation: Conversation, where: str, problems: list[str]) -> None:
    """system? then user/assistant alternating, starting with user and ending with assistant; an
    assistant's tool calls are followed by their results (tool messages), then by the assistant."""
    messages = conversation[1:] if conversation and conversation[0]["role"] == "system" else conversation
    if not messages:
        return
    expected = ("user",)
    for index, message in enumerate(messages, start=1):
        role = message["role"]
        if role not in expected:
            tools = "; tool results follow an assistant's tool calls" if "tool" in (role, *expected) else ""
            problems.append(
                f"{where}: roles out of order: turn {index} is '{role}', expected "
                f"{' or '.join(repr(r) for r in expected)} (system first, then user and assistant alternating{tools})"
            )
            return
        if role == "assistant":
            expected = ("tool",) if message.get("tool_calls") else ("user",)
        else:
            expected = ("tool", "assistant") if role == "tool" else ("assistant",)
    if messages[-1]["role"] != "assistant":
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


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a while (as it was before, after). Reading a file
    creates millions of dicts and lists, none of them in a cycle, and the collector would scan all
    that are alive again and again as their number grows (bench/README.md)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class DatasetStream:
    """A dataset file's conversations, read and checked as they are iterated, READ_CHUNK records at
    a time (the length analysis reads the next chunk while the tokenizer works on the previous one).

    Opening it reads the file and raises its file-level problems; len() is the number of records,
    known before the first is parsed; the format is known too ('auto': the first record with a
    detectable format, parsed ahead as far as needed). Every problem of every record is collected
    over the whole file and raised together once its end is read (lines that are not JSON first,
    as load_dataset does): nothing after the first bad record is yielded, so whoever iterates only
    ever sees good conversations, then the error. Read once.
    """

    def __init__(self, path: str | Path, fmt: str = "auto", convert: Callable[[Any], Any] | None = None):
        """`convert` maps each record first (core.dataset_info: a registry entry's columns to the
        canonical keys)."""
        path = Path(path)
        if fmt not in DATASET_FORMATS:
            raise UserInputError(f"Unknown dataset format {fmt!r}: use one of {', '.join(DATASET_FORMATS)}")
        self.path = str(path)
        self._name = path.name
        self._json_problems: list[str] = []
        with _collector_paused():
            entries, lines = _entries(path)
            self._count = len(entries)
            records = _parsed(entries, lines, self._json_problems)
            if convert is not None:
                records = ((where, convert(record)) for where, record in records)
            ahead: list[tuple[str, Any]] = []  # records parsed to find the format
            if fmt == "auto":
                for where, record in records:
                    ahead.append((where, record))
                    if detected := detect_format(record):
                        fmt = detected
                        break
                else:  # the whole file read, and no record says its format
                    if self._json_problems:
                        raise _not_json(path.name, self._json_problems)
                    if not ahead:
                        raise UserInputError(f"{path.name} holds no examples")
                    raise UserInputError(
                        f"{path.name}: cannot tell the format. Expected keys 'messages' (OpenAI), "
                        f"'conversations' (sharegpt) or 'instruction'/'output' (alpaca) in {ahead[0][0]}"
                    )
            elif not entries:
                raise UserInputError(f"{path.name} holds no examples")
        self.format = fmt
        self._records: Iterator[tuple[str, Any]] | None = itertools.chain(ahead, records)

    def __len__(self) -> int:
        """Records in the file (a .jsonl line that is not JSON counts: reading it raises at the end)."""
        return self._count

    def __iter__(self) -> Iterator[Conversation]:
        if self._records is None:
            raise RuntimeError(f"{self._name} is being read or was read: a DatasetStream is read once")
        records, self._records = self._records, None
        return self._conversations(records)

    def _conversations(self, records: Iterator[tuple[str, Any]]) -> Iterator[Conversation]:
        problems: list[str] = []
        while True:
            # Paused per chunk: whoever keeps every conversation (load_dataset) pauses it throughout.
            with _collector_paused():
                chunk = list(itertools.islice(records, READ_CHUNK))  # parses the lines of a .jsonl file
                # Once a line is not JSON, only that is reported: the records need not be checked.
                checked = [] if self._json_problems else [normalise(r, self.format, w, problems) for w, r in chunk]
            if not chunk:
                break
            if not problems and not self._json_problems:
                yield from checked
        if self._json_problems:
            raise _not_json(self._name, self._json_problems)
        if problems:
            raise UserInputError(f"{self._name} ({self.format} format): {len(problems)} problem(s):", problems)


def load_dataset(path: str | Path, fmt: str = "auto", convert: Callable[[Any], Any] | None = None) -> Dataset:
    """Load and validate a dataset file: a DatasetStream read whole (the collector paused throughout,
    as every conversation stays alive); raise UserInputError listing every bad record."""
    with _collector_paused():
        stream = DatasetStream(path, fmt, convert)
        conversations = list(stream)
    return Dataset(conversations=conversations, format=stream.format, path=stream.path)
