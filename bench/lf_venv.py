"""LLaMA-Factory as the benchmarks' peer, in a virtual environment of its own (bench/.lf-venv).

    python -m bench.lf_venv          # create it (minutes, needs PyPI), then print its python

Never created by `make test`. torch is installed first and pinned to the project's CPU build, so
llamafactory's own requirements cannot pull a CUDA build; torchvision and torchaudio are removed
again (PyPI's torchvision does not import beside that torch) and replaced by a stub `torchaudio`
module, which llamafactory imports at start-up and text SFT never calls.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LF_VERSION = "0.9.5"
TORCH_PIN = "torch==2.13.0"
VENV = Path(__file__).resolve().parent / ".lf-venv"
_READY = VENV / ".ready"
# our OpenAI-style `messages` files as LLaMA-Factory's dataset_info.json reads them
LF_DATASET = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages"},
    "tags": {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "system_tag": "system",
    },
}
_STUB = "# stub: llamafactory imports torchaudio at start-up; text SFT never calls it\n__version__ = '0.0'\n"


def lf_python() -> Path:
    """The peer venv's python, creating the venv first if it is not there yet."""
    python = VENV / "bin" / "python"
    if _READY.is_file():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, TORCH_PIN], check=True)
    subprocess.run([*pip, TORCH_PIN, f"llamafactory=={LF_VERSION}"], check=True)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "torchvision", "torchaudio"], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    stub = Path(site) / "torchaudio"
    stub.mkdir(exist_ok=True)
    (stub / "__init__.py").write_text(_STUB)
    subprocess.run([str(python), "-c", "import llamafactory"], check=True)
    _READY.touch()
    return python


def register_dataset(data: Path) -> str:
    """Write a dataset_info.json beside `data` naming it for LLaMA-Factory; returns the name."""
    (data.parent / "dataset_info.json").write_text(json.dumps({data.stem: {"file_name": data.name, **LF_DATASET}}))
    return data.stem


if __name__ == "__main__":
    print(lf_python())
