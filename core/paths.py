"""Where the project's own files are, and the one rule for resolving a dataset path."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = PROJECT_ROOT / "datasets_demo"
PRESETS_DIR = PROJECT_ROOT / "presets"


def resolve_dataset(value: str | Path) -> Path:
    """A dataset path as typed: absolute as is; a relative one from the current directory when it is
    there, else from the project root (so `datasets_demo/...` in a preset or on the page works
    wherever the server or CLI was started). A path found nowhere is given from the current
    directory, which is what its 'not found' message should name."""
    path = Path(str(value or "").strip()).expanduser()
    if path.is_absolute() or path.exists() or not (PROJECT_ROOT / path).exists():
        return path.absolute()
    return PROJECT_ROOT / path


def display_path(path: str | Path) -> str:
    """Project files by their short relative path, others in full."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
