"""Take a run's adapter out of the workbench: as a zip, or merged into a full model folder.

<run>/export/<run>-adapter.zip   the PEFT adapter folder (+ tokenizer and chat template), zipped
<run>/merged/                    base model with the adapter merged in (merge_and_unload) + tokenizer:
                                 loads with AutoModelForCausalLM.from_pretrained, no peft needed
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from core.config import read_yaml_mapping
from core.errors import UserInputError
from core.events import RunFolder
from core.models import ModelSource, load_model, load_tokenizer, resolve_model


def _adapter_of(run_dir: str | Path) -> RunFolder:
    run = RunFolder(run_dir)
    if not (run.adapter / "adapter_config.json").is_file():
        raise UserInputError(
            f"Run {run.path.name} has no adapter yet: it saves one when it finishes or is stopped after its first step."
        )
    return run


def zip_adapter(run_dir: str | Path) -> Path:
    """Zip <run>/adapter into <run>/export/<run>-adapter.zip (files under a `<run>-adapter/` folder)."""
    run = _adapter_of(run_dir)
    target = run.path / "export" / f"{run.path.name}-adapter.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(run.adapter.rglob("*")):
            if file.is_file():
                archive.write(file, Path(f"{run.path.name}-adapter") / file.relative_to(run.adapter))
    os.replace(partial, target)
    return target


def merge_adapter(run_dir: str | Path) -> Path:
    """Merge the adapter into its base model and save a full HF folder at <run>/merged.

    The base is loaded unquantized (a QLoRA adapter merges into the full-precision weights, the
    usual practice: merging into 4-bit weights would round the update away). Written to a temporary
    sibling and renamed, so a half-written folder is never mistaken for a model.
    """
    from peft import PeftModel

    run = _adapter_of(run_dir)
    config = read_yaml_mapping(run.config)
    source = resolve_model(str(config.get("model_name_or_path", "default")))
    base = load_model(source, "none")
    merged = PeftModel.from_pretrained(base, str(run.adapter)).merge_and_unload()
    tokenizer = load_tokenizer(ModelSource(str(run.adapter)))  # saved with the adapter: chat template too
    target = run.path / "merged"
    tmp = Path(tempfile.mkdtemp(prefix="merged.", dir=run.path))
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
