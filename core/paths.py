"""Where the project's own files are, and the one rule for resolving a dataset path."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.errors import UserInputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = PROJECT_ROOT / "datasets_demo"
PRESETS_DIR = PROJECT_ROOT / "presets"
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # "Qwen/Qwen2.5-0.5B-Instruct"; anything else is a path
MAX_SHOWN_PATH = 120  # a path is quoted up to this length in a message


def resolve_dataset(value: str | Path) -> Path:
    """A dataset path as typed: absolute as is; a relative one from the current directory when it is
    there, else from the project root (so `datasets_demo/...` in a preset or on the page works
    wherever the server or CLI was started). A path found nowhere is given from the current
    directory, which is what its 'not found' message should name."""
    path = Path(str(value or "").strip()).expanduser()
    try:
        if path.is_absolute() or path.exists() or not (PROJECT_ROOT / path).exists():
            return path.absolute()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: not found anywhere
        return path.absolute()
    return PROJECT_ROOT / path


def display_path(path: str | Path) -> str:
    """Project files by their short relative path, others in full."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def shown_path(path: str | Path) -> str:
    """A path for a message, cut so that a 5,000-character one still gives a readable line; quoted
    when it holds a character a terminal would not show (a NUL byte)."""
    text = str(path) if str(path).isprintable() else repr(str(path))
    return text if len(text) <= MAX_SHOWN_PATH else f"{text[:MAX_SHOWN_PATH]}... ({len(text)} characters)"


@contextlib.contextmanager
def path_errors(what: str, path: str | Path) -> Iterator[None]:
    """An OSError or ValueError from looking at a typed path (a name too long for the file system,
    a NUL byte, no permission) as a UserInputError naming it, instead of a traceback."""
    try:
        yield
    except UserInputError:
        raise
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise UserInputError(f"{what} {shown_path(path)} cannot be used: {reason}") from None


def write_text_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: a reader of `path` never sees a
    half-written file, and a crash leaves the previous file (if any) in place."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
