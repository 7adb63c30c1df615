"""LLaMA-Factory's dataset registry: `dataset: a,b` with `dataset_dir` names datasets registered in
`<dataset_dir>/dataset_info.json`.

The one way a run's dataset is found and read (`resolve`, `load_datasets`, `load_run_dataset`,
`dataset_conversations`): the trainer, the pre-start check, the length analyzer and the Data tab
all call it. A registry entry's
`columns` and `tags` only rename: each record is turned into the canonical alpaca / sharegpt /
OpenAI record that core.data reads, and core.data's one normaliser checks it, so every
record-numbered message comes from the same place. Every problem of every named dataset is raised
together: nothing trains on part of what the config names.
"""

from __future__ import annotations

import difflib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data import Conversation, Dataset, DatasetStream, NotJsonError, load_dataset
from core.errors import UserInputError
from core.paths import path_errors, resolve_dataset, shown_path

REGISTRY_FILE = "dataset_info.json"
FILE_SUFFIXES = (".json", ".jsonl")
FORMATTINGS = ("alpaca", "sharegpt", "openai")
HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
# LLaMA-Factory's column defaults per formatting, and the canonical key core.data reads for each.
COLUMNS: dict[str, dict[str, tuple[str | None, str]]] = {
    "alpaca": {
        "prompt": ("instruction", "instruction"),
        "query": ("input", "input"),
        "response": ("output", "output"),
        "history": (None, "history"),
        "system": (None, "system"),
    },
    "sharegpt": {"messages": ("conversations", "conversations"), "system": (None, "system"), "tools": (None, "tools")},
    "openai": {"messages": ("messages", "messages"), "system": (None, "system"), "tools": (None, "tools")},
}
REQUIRED_COLUMNS = {"alpaca": ("prompt", "response"), "sharegpt": ("messages",), "openai": ("messages",)}
# Columns LLaMA-Factory knows that an SFT run of a text model cannot use: refused, with why.
UNUSABLE_COLUMNS = {
    "images": "images",
    "videos": "videos",
    "audios": "audio",
    "chosen": "preference pairs (DPO/RM stages)",
    "rejected": "preference pairs (DPO/RM stages)",
    "kto_tag": "KTO labels",
}
# tag -> (sharegpt default, openai default); the canonical role each becomes.
TAGS: dict[str, tuple[str, str]] = {
    "role_tag": ("from", "role"),
    "content_tag": ("value", "content"),
    "user_tag": ("human", "user"),
    "assistant_tag": ("gpt", "assistant"),
    "system_tag": ("system", "system"),
    "function_tag": ("function_call", "function_call"),
    "observation_tag": ("observation", "tool"),
}
CANONICAL_ROLES = {  # tag -> (sharegpt "from", OpenAI "role")
    "user_tag": ("human", "user"),
    "assistant_tag": ("gpt", "assistant"),
    "system_tag": ("system", "system"),
    "function_tag": ("function_call", "assistant"),
    "observation_tag": ("observation", "tool"),
}


@dataclass(frozen=True)
class Entry:
    """One checked dataset_info.json entry whose data is a local file."""

    name: str
    path: Path
    formatting: str
    columns: dict[str, str | None]  # LLaMA-Factory column name -> the record's key (None: not read)
    tags: dict[str, str]
    num_samples: int | None = None
    mapped: tuple[str, ...] = field(default=())  # the columns the entry names itself

    def canonical(self, record: Any) -> Any:
        """The record with our keys: renamed only, so that core.data's checks see what the file holds."""
        if not isinstance(record, dict):
            return record
        out: dict[str, Any] = {}
        for column, (_, ours) in COLUMNS[self.formatting].items():
            key = self.columns[column]
            if key is not None and key in record:
                out[ours] = record[key]
        if self.formatting == "alpaca":
            # LLaMA-Factory joins prompt and query with one newline.
            prompt, query = out.get("instruction"), out.pop("input", None)
            if isinstance(query, str) and query.strip():
                out["instruction"] = f"{prompt}\n{query}" if isinstance(prompt, str) and prompt.strip() else query
            return out
        turns_key = "conversations" if self.formatting == "sharegpt" else "messages"
        if isinstance(out.get(turns_key), list):
            out[turns_key] = [self._turn(t) for t in out[turns_key]]
        return out

    def _turn(self, turn: Any) -> Any:
        if not isinstance(turn, dict):
            return turn
        role_key, content_key = self.tags["role_tag"], self.tags["content_tag"]
        which = 0 if self.formatting == "sharegpt" else 1
        roles = {self.tags[tag]: pair[which] for tag, pair in CANONICAL_ROLES.items()}
        rest = {k: v for k, v in turn.items() if k not in (role_key, content_key)}
        role = turn.get(role_key)
        role = roles.get(role, role) if isinstance(role, str) else role
        if self.formatting == "sharegpt":
            return {**rest, "from": role, "value": turn.get(content_key)}
        return {**rest, "role": role, "content": turn.get(content_key)}

    def described(self) -> str:
        renamed = [f"{c}={self.columns[c]}" for c in self.mapped]
        return f"{self.formatting}" + (f"; columns {', '.join(renamed)}" if renamed else "")


Source = Path | Entry  # a plain file, or a registered dataset


def is_file_value(part: str) -> bool:
    return part.strip().lower().endswith(FILE_SUFFIXES)


def registry_path(dataset_dir: str | Path, workdir: Path | None = None) -> Path:
    return (workdir or Path.cwd()) / Path(str(dataset_dir).strip()).expanduser() / REGISTRY_FILE


def read_registry(dataset_dir: str | Path, workdir: Path | None = None) -> dict[str, Any] | None:
    """The registry's entries by name, None when the folder has no dataset_info.json; a file that is
    not a JSON object raises with the line and column to look at."""
    path = registry_path(dataset_dir, workdir)
    with path_errors("Dataset registry", path):
        if not path.is_file():
            return None
        text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserInputError(
            f"{shown_path(path)} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None
    if not isinstance(data, dict):
        raise UserInputError(
            f"{shown_path(path)} must hold an object of dataset name -> entry, got a {type(data).__name__}"
        )
    return data


def registered_names(dataset_dir: str | Path, workdir: Path | None = None) -> list[str]:
    """The names a folder's dataset_info.json registers ([] without one); raises when it is malformed."""
    registry = read_registry(dataset_dir, workdir)
    return list(registry) if registry else []


def _entry(name: str, raw: Any, folder: Path, registry: Path) -> Entry:
    """Check one entry's shape; every problem of the entry in one message naming it."""
    where = f"Dataset {name!r} in {shown_path(registry)}"
    if not isinstance(raw, dict):
        raise UserInputError(f"{where} must be an object with a file_name, got a {type(raw).__name__}")
    problems: list[str] = []
    hub = next((k for k in HUB_KEYS if k in raw), None)
    if "file_name" not in raw:
        if hub:
            raise UserInputError(
                f"{where} is read from {hub} {raw[hub]!r}: LoRA Tailor trains offline from local files. "
                f"Download it, and register the file with file_name."
            )
        raise UserInputError(f"{where} has no file_name")
    file_name, formatting = raw["file_name"], raw.get("formatting", "alpaca")
    if not isinstance(file_name, str) or not file_name.strip():
        problems.append(f"file_name must be a file name, got {file_name!r}")
    elif not is_file_value(file_name):
        problems.append(f"file_name {file_name!r}: only .json and .jsonl files are read here")
    if formatting not in FORMATTINGS:
        problems.append(f"formatting must be one of {', '.join(FORMATTINGS)}, got {formatting!r}")
        formatting = "alpaca"
    if raw.get("ranking"):
        problems.append("ranking: true is preference data (DPO/RM stages); only SFT is done here")
    num_samples = raw.get("num_samples")
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
    ):
        problems.append(f"num_samples must be a whole number >= 1, got {num_samples!r}")
    columns = {c: default for c, (default, _) in COLUMNS[formatting].items()}
    given = raw.get("columns", {})
    if not isinstance(given, dict):
        problems.append(f"columns must be an object of column -> field name, got {type(given).__name__}")
        given = {}
    for column, key in given.items():
        if column in UNUSABLE_COLUMNS:
            problems.append(f"columns.{column}: {UNUSABLE_COLUMNS[column]} cannot be trained here (text SFT only)")
        elif column not in columns:
            problems.append(
                f"columns.{column} is not a column of {formatting} entries; use {', '.join(columns)} (LLaMA-Factory's names)"
            )
        elif key is not None and not isinstance(key, str):
            problems.append(f"columns.{column} must name a field, got {key!r}")
        else:
            columns[column] = key
    tags = {tag: pair[0 if formatting != "openai" else 1] for tag, pair in TAGS.items()}
    given_tags = raw.get("tags", {})
    if not isinstance(given_tags, dict):
        problems.append(f"tags must be an object of tag -> value, got {type(given_tags).__name__}")
        given_tags = {}
    for tag, value in given_tags.items():
        if tag not in tags:
            problems.append(f"tags.{tag} is not a tag; use {', '.join(tags)}")
        elif not isinstance(value, str):
            problems.append(f"tags.{tag} must be a string, got {value!r}")
        else:
            tags[tag] = value
    if given_tags and formatting == "alpaca":
        problems.append("tags apply to sharegpt and openai formatting, not alpaca")
    if problems:
        raise UserInputError(f"{where}:", problems)
    path = folder / file_name
    with path_errors(where, path):
        if not path.is_file():
            raise UserInputError(f"{where}: file_name {file_name!r} not found: {shown_path(path)}")
    mapped = tuple(c for c in given if given[c] is not None)
    return Entry(name, path, formatting, columns, tags, num_samples, mapped)


def resolve(dataset: str, dataset_dir: str = "", workdir: Path | None = None) -> list[Source]:
    """What `dataset` names, checked without reading the data: files that exist and registry entries
    whose files exist. With no dataset_dir the value is one file, as it always was."""
    base = workdir or Path.cwd()
    if not str(dataset_dir or "").strip():
        return [_file(dataset, base, hint=True)]
    parts = [p.strip() for p in str(dataset).split(",") if p.strip()]
    if not parts:
        raise UserInputError("dataset is empty: give a file or names registered in dataset_info.json")
    registry = None
    registry_file = registry_path(dataset_dir, base)
    sources: list[Source] = []
    problems: list[str] = []
    for part in parts:
        try:
            if registry is None and not is_file_value(part):
                registry = read_registry(dataset_dir, base)
                if registry is None:
                    raise UserInputError(
                        f"Dataset {part!r} is a name, but {shown_path(registry_file.parent)} (dataset_dir) has no "
                        f"{REGISTRY_FILE} to look it up in"
                    )
            if registry is not None and part in registry:
                sources.append(_entry(part, registry[part], registry_file.parent, registry_file))
            elif is_file_value(part):
                sources.append(_file(part, base))
            else:
                close = difflib.get_close_matches(part, list(registry), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UserInputError(
                    f"Dataset {part!r} is not registered in {shown_path(registry_file)}{hint}; registered: "
                    f"{', '.join(registry) or 'none'}"
                )
        except UserInputError as err:
            problems.append(str(err).replace("\n", "\n    "))
    if len(problems) == 1 and len(parts) == 1:
        raise UserInputError(problems[0])
    if problems:
        raise UserInputError(f"Cannot read dataset {dataset!r}:", problems)
    return sources


def single_file(dataset: str, dataset_dir: str = "", workdir: Path | None = None) -> Path:
    """The one file `dataset` reads: itself, or its registered entry's file_name (tools that edit a
    file, such as filling placeholders, work on one)."""
    sources = resolve(dataset, dataset_dir, workdir)
    if len(sources) != 1:
        raise UserInputError(f"Dataset {dataset!r} names {len(sources)} datasets: choose one to edit")
    return sources[0] if isinstance(sources[0], Path) else sources[0].path


def _file(value: str, base: Path, hint: bool = False) -> Path:
    path = base / Path(str(value).strip()).expanduser()
    with path_errors("Dataset", value):
        if path.is_dir():
            raise UserInputError(f"Dataset {shown_path(path)} is a folder: give a .json or .jsonl file")
        if not path.is_file():
            why = (
                f" (a name registered in a {REGISTRY_FILE} needs dataset_dir: its folder)"
                if hint and not is_file_value(str(value))
                else ""
            )
            raise UserInputError(f"Dataset file not found: {shown_path(path)}{why}")
    return path


def _load_entry(entry: Entry) -> Dataset:
    """An entry's records, renamed and normalised; a column that no record holds is named as such."""
    seen: set[str] = set()

    def canonical(record: Any) -> Any:
        if isinstance(record, dict):
            seen.update(record)
        return entry.canonical(record)

    try:
        dataset = load_dataset(entry.path, entry.formatting, convert=canonical)
    except UserInputError as err:
        error: UserInputError | None = err
    else:
        error = None
    wanted = {c for c in (*REQUIRED_COLUMNS[entry.formatting], *entry.mapped) if entry.columns.get(c)}
    absent = [
        f"columns.{c} names field {entry.columns[c]!r}, which no record has"
        for c in sorted(wanted)
        if entry.columns[c] not in seen
    ]
    if seen and absent and not isinstance(error, NotJsonError):  # records read up to a line that is not JSON
        raise UserInputError(
            f"Dataset {entry.name!r} ({shown_path(entry.path)}): its records have {', '.join(sorted(seen))}:", absent
        )
    if error is not None:
        raise UserInputError(f"Dataset {entry.name!r} ({entry.described()}): {error.title}", error.problems) from None
    return dataset


def _sample(conversations: list, count: int, seed: int) -> list:
    """num_samples: `count` of them drawn by seed; more than there are repeats the whole set first."""
    whole, rest = divmod(count, len(conversations))
    return conversations * whole + random.Random(seed).sample(conversations, rest)


def load_datasets(
    dataset: str,
    dataset_format: str = "auto",
    dataset_dir: str = "",
    max_samples: int = 0,
    seed: int = 42,
    workdir: Path | None = None,
) -> Dataset:
    """Every named dataset read and concatenated in order; all their problems raised together.
    A registered dataset uses its entry's formatting; dataset_format applies to plain files."""
    return _load_sources(dataset, resolve(dataset, dataset_dir, workdir), dataset_format, max_samples, seed)


def dataset_conversations(
    dataset: str, dataset_format: str = "auto", dataset_dir: str = "", workdir: Path | None = None
) -> list[Conversation] | DatasetStream:
    """load_datasets' conversations; one plain file is opened as a DatasetStream instead, whose
    records are read and checked as they are iterated (the exact length count reads them while it
    tokenizes). Its problems are the same, the file's own at once, its records' at the end."""
    sources = resolve(dataset, dataset_dir, workdir)
    if len(sources) == 1 and isinstance(sources[0], Path):
        return DatasetStream(sources[0], dataset_format)
    return _load_sources(dataset, sources, dataset_format).conversations


def _load_sources(
    dataset: str, sources: list[Source], dataset_format: str, max_samples: int = 0, seed: int = 42
) -> Dataset:
    loaded, problems = [], []
    for source in sources:
        try:
            if isinstance(source, Entry):
                part = _load_entry(source)
                if source.num_samples:
                    part.conversations = _sample(part.conversations, source.num_samples, seed)
            else:
                part = load_dataset(source, dataset_format)
        except UserInputError as err:
            problems.append(err)
            continue
        if max_samples:
            part.conversations = part.conversations[:max_samples]
        loaded.append(part)
    if len(problems) == 1 and len(sources) == 1:
        raise problems[0]
    if problems:
        raise UserInputError(
            f"Cannot train on {dataset!r}: {len(problems)} of its datasets have problems (nothing is trained on part of it):",
            [f"{err.title} {p}" if err.problems else err.title for err in problems for p in err.problems or [""]],
        )
    if len(loaded) == 1:
        return loaded[0]
    formats = list(dict.fromkeys(d.format for d in loaded))
    return Dataset(
        conversations=[c for d in loaded for c in d.conversations],
        format="+".join(formats),
        path=", ".join(d.path for d in loaded),
    )


def page_dataset(dataset: str, dataset_dir: str = "") -> tuple[str, str]:
    """(dataset, dataset_dir) as the page's values mean them, absolute for a worker in another
    directory: paths by core.paths.resolve_dataset (here, else the project), names as they are."""
    if not str(dataset_dir or "").strip():
        return str(resolve_dataset(dataset)), ""
    parts = [p.strip() for p in str(dataset or "").split(",") if p.strip()]
    shown = [str(resolve_dataset(p)) if is_file_value(p) else p for p in parts]
    return ",".join(shown), str(resolve_dataset(dataset_dir))


def load_run_dataset(config, workdir: Path | None = None) -> Dataset:
    """The conversations a run with `config` (a TrainConfig) trains on."""
    return load_datasets(
        config.dataset, config.dataset_format, config.dataset_dir, config.max_samples, config.seed, workdir
    )


def dataset_problem(config, workdir: Path | None = None) -> str | None:
    """Why the run's dataset cannot be read, without reading the records (the pre-start check)."""
    try:
        resolve(config.dataset, config.dataset_dir, workdir)
    except UserInputError as err:
        return str(err)
    return None
