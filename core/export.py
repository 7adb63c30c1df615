"""Take a run's adapter out of the workbench: a zip, a merged model folder, or a GGUF for Ollama.

    python -m core.export RUN --to zip|merged|gguf [--gguf-type f16|q8_0]

<run>/export/<run>-adapter.zip   the PEFT adapter folder (+ tokenizer and chat template) and the
                                 model card, zipped under a `<run>-adapter/` folder
<run>/merged/                    base model with the adapter merged in (merge_and_unload) + tokenizer
                                 + model card: loads with AutoModelForCausalLM.from_pretrained, no peft
<run>/export/gguf-<type>/        <run>-<type>.gguf (core.gguf_export), an Ollama Modelfile beside it
                                 (core.modelfile), the model card, and verification.json:
                                 `cd` there and `ollama create NAME -f Modelfile`

Every export carries a README.md model card (core.model_card). Each is written to a temporary
sibling and renamed, so what sits at these paths is always complete.

A GGUF is verified before it is kept: transformers loads it back, and its logits and greedy answers
on questions from the run's dataset are compared with the merged model's (`verify_gguf`). The
largest logit difference is reported; beyond GGUF_TOLERANCE the export fails and nothing is kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.config import read_yaml_mapping
from core.errors import UserInputError
from core.events import RunFolder
from core.gguf_export import GGUF_TYPES, Progress, check_convertible, read_tokenizer_json, write_gguf
from core.model_card import model_card
from core.modelfile import build_modelfile
from core.models import ModelSource, load_model, load_tokenizer, resolve_model
from core.paths import shown_path

EXPORT_TARGETS = ("zip", "merged", "gguf")
# Largest |logit difference| allowed between the GGUF (as transformers loads it) and the merged
# model, as a share of the largest |logit| of the merged model. Measured on the default model
# (bench/README.md, "GGUF export"): f16 and Q8_0 rounding stay an order of magnitude below these
# limits, and a converter error (q/k rows left unpermuted) lands far above them.
GGUF_TOLERANCE = {"f16": 0.02, "q8_0": 0.15}
VERIFY_QUESTIONS = 4  # first user turns of the dataset asked to both models
VERIFY_NEW_TOKENS = 24
FALLBACK_QUESTIONS = ["Hello! Who are you?", "What can you help me with?"]
CARD = "README.md"


def _adapter_of(run_dir: str | Path) -> RunFolder:
    run = RunFolder(run_dir)
    if not (run.adapter / "adapter_config.json").is_file():
        raise UserInputError(
            f"Run {run.path.name} has no adapter yet: it saves one when it finishes or is stopped after its first step."
        )
    return run


def _part(progress: Progress | None, start: float, end: float) -> Progress | None:
    """`progress` for one stage, mapped onto [start, end] of the whole export."""
    if progress is None:
        return None
    return lambda share, message: progress(start + (end - start) * share, message)


def _replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


# ------------------------------------------------------------------------------------ zip, merged
def zip_adapter(run_dir: str | Path) -> Path:
    """Zip <run>/adapter and a model card into <run>/export/<run>-adapter.zip."""
    run = _adapter_of(run_dir)
    folder = f"{run.path.name}-adapter"
    target = run.path / "export" / f"{folder}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.part")
    usage = [
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'tokenizer = AutoTokenizer.from_pretrained("{folder}")  # the run\'s chat template and system prompt',
        f'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE_MODEL), "{folder}")',
        "```",
    ]
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(run.adapter.rglob("*")):
            if file.is_file() and file.relative_to(run.adapter) != Path(CARD):  # peft's stub card: ours replaces it
                archive.write(file, Path(folder) / file.relative_to(run.adapter))
        archive.writestr(f"{folder}/{CARD}", model_card(run, "LoRA adapter (PEFT)", usage))
    os.replace(partial, target)
    return target


def merge_adapter(run_dir: str | Path, progress: Progress | None = None) -> Path:
    """Merge the adapter into its base model and save a full HF folder at <run>/merged.

    The base is loaded unquantized (a QLoRA adapter merges into the full-precision weights, the
    usual practice: merging into 4-bit weights would round the update away).
    """
    from peft import PeftModel

    run = _adapter_of(run_dir)
    config = read_yaml_mapping(run.config)
    if progress:
        progress(0.0, "loading the base model")
    source = resolve_model(str(config.get("model_name_or_path", "default")))
    base = load_model(source, "none")
    if progress:
        progress(0.4, "merging the adapter")
    merged = PeftModel.from_pretrained(base, str(run.adapter)).merge_and_unload()
    tokenizer = load_tokenizer(ModelSource(str(run.adapter)))  # saved with the adapter: chat template too
    target = run.path / "merged"
    tmp = Path(tempfile.mkdtemp(prefix="merged.", dir=run.path))
    try:
        if progress:
            progress(0.6, "saving the merged model")
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        usage = [
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            'model = AutoModelForCausalLM.from_pretrained("merged")',
            'tokenizer = AutoTokenizer.from_pretrained("merged")  # the run\'s chat template and system prompt',
            "```",
        ]
        (tmp / CARD).write_text(model_card(run, "merged model (base + adapter)", usage), encoding="utf-8")
        _replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        progress(1.0, "merged")
    return target


# ------------------------------------------------------------------------------------------ gguf
@dataclass
class GgufCheck:
    """The GGUF as transformers loads it, against the merged model, on the same questions."""

    gguf_type: str
    questions: list[str]
    questions_from: str  # where the questions came from: the dataset file, or "built-in"
    max_logit_diff: float  # largest |difference| over every position and vocabulary entry
    max_logit: float  # largest |logit| of the merged model on the same positions
    tolerance: float  # the largest max_logit_diff accepted (GGUF_TOLERANCE x max_logit)
    greedy_matches: int  # questions whose greedy answers are identical
    answers: list[dict[str, str]] = field(default_factory=list)  # question, merged, gguf
    tokenizer_matches: bool = True  # the GGUF's tokenizer encodes every prompt to the same ids
    chat_template_matches: bool = True

    @property
    def ok(self) -> bool:
        return self.max_logit_diff <= self.tolerance

    def summary(self) -> str:
        return (
            f"largest logit difference {self.max_logit_diff:.4g} (largest logit {self.max_logit:.4g}, "
            f"tolerance {self.tolerance:.4g}); greedy answers identical on {self.greedy_matches} of "
            f"{len(self.questions)} questions; tokenizer {'matches' if self.tokenizer_matches else 'DIFFERS'}; "
            f"chat template {'matches' if self.chat_template_matches else 'DIFFERS'}"
        )


@dataclass
class GgufExport:
    folder: Path
    gguf: Path
    modelfile: Path
    check: GgufCheck
    template_translated: bool
    elapsed_s: float


def verification_questions(run: RunFolder, count: int = VERIFY_QUESTIONS) -> tuple[list[str], str]:
    """The first user turns of the run's dataset (distinct), or a built-in pair if it is gone."""
    from core.dataset_info import load_datasets

    config = read_yaml_mapping(run.config)
    path, dataset_dir = str(config.get("dataset", "")), str(config.get("dataset_dir", ""))
    try:
        dataset = load_datasets(path, str(config.get("dataset_format", "auto")), dataset_dir)
    except (UserInputError, OSError):
        return FALLBACK_QUESTIONS, "built-in"
    questions: list[str] = []
    for conversation in dataset.conversations:
        user = next((m["content"] for m in conversation if m["role"] == "user"), None)
        if user and user not in questions:
            questions.append(user)
        if len(questions) == count:
            break
    return questions or FALLBACK_QUESTIONS, dataset.path


def verify_gguf(merged_dir: Path, gguf: Path, gguf_type: str, questions: list[str], questions_from: str) -> GgufCheck:
    """Load `gguf` back with transformers and compare it with the merged model: logits at every
    position of prompt + the merged model's greedy answer, and both models' greedy answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.probes import greedy_answers
    from core.template import ChatEncoder

    tokenizer = load_tokenizer(ModelSource(str(merged_dir)))
    encoder = ChatEncoder(tokenizer)  # the saved template already holds the run's system prompt
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    exported = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    gguf_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    merged_answers = greedy_answers(merged, tokenizer, encoder, questions, max_new_tokens=VERIFY_NEW_TOKENS)
    gguf_answers = greedy_answers(exported, tokenizer, encoder, questions, max_new_tokens=VERIFY_NEW_TOKENS)
    max_diff = max_logit = 0.0
    tokenizer_matches = True
    for question, answer in zip(questions, merged_answers, strict=True):
        prompt = encoder.prompt_for_reply([{"role": "user", "content": question}])
        ids = tokenizer(prompt + answer, add_special_tokens=False, return_tensors="pt").input_ids
        tokenizer_matches &= gguf_tokenizer(prompt + answer, add_special_tokens=False).input_ids == ids[0].tolist()
        with torch.inference_mode():
            expected, got = merged(ids).logits, exported(ids).logits  # [1, tokens, vocab]
        max_diff = max(max_diff, (got - expected).abs().max().item())
        max_logit = max(max_logit, expected.abs().max().item())
    return GgufCheck(
        gguf_type=gguf_type,
        questions=questions,
        questions_from=questions_from,
        max_logit_diff=max_diff,
        max_logit=max_logit,
        tolerance=GGUF_TOLERANCE[gguf_type] * max_logit,
        greedy_matches=sum(a == b for a, b in zip(merged_answers, gguf_answers, strict=True)),
        answers=[
            {"question": q, "merged": a, "gguf": b}
            for q, a, b in zip(questions, merged_answers, gguf_answers, strict=True)
        ],
        tokenizer_matches=tokenizer_matches,
        chat_template_matches=gguf_tokenizer.chat_template == tokenizer.chat_template,
    )


def check_gguf_export(run: RunFolder) -> None:
    """Refuse a model the converter cannot write, before anything is merged or written."""
    from transformers import AutoConfig

    config = read_yaml_mapping(run.config)
    source = resolve_model(str(config.get("model_name_or_path", "default")))
    try:
        model_config = AutoConfig.from_pretrained(source.path).to_dict()
    except (OSError, ValueError) as err:
        raise UserInputError(f"Cannot read the base model's config at {source.path}: {err}") from None
    check_convertible(model_config, read_tokenizer_json(load_tokenizer(ModelSource(str(run.adapter)))))


def _gguf_card(run: RunFolder, gguf_name: str, check: GgufCheck, translated: bool) -> str:
    usage = [
        "```sh",
        f"ollama create {run.path.name.lower()} -f Modelfile   # in this folder",
        f"ollama run {run.path.name.lower()}",
        f"llama-cli -m {gguf_name} -cnv                 # llama.cpp",
        "```",
        "",
        "The GGUF holds the run's chat template, with its system prompt, as `tokenizer.chat_template`.",
        "The Modelfile's TEMPLATE is the same chat in Ollama's Go syntax (ChatML)."
        if translated
        else "The Modelfile has no TEMPLATE: the chat template is not ChatML, the one this exporter "
        "translates; Ollama uses the template it recognises from the GGUF, or none.",
        "",
        f"Checked after writing: {check.summary()}. Questions from {check.questions_from}.",
    ]
    return model_card(run, f"GGUF ({check.gguf_type}) for llama.cpp and Ollama", usage)


def export_gguf(run_dir: str | Path, gguf_type: str = "f16", progress: Progress | None = None) -> GgufExport:
    """Merge, write <run>/export/gguf-<type>/ (GGUF, Modelfile, model card), verify, keep."""
    if gguf_type not in GGUF_TYPES:
        raise UserInputError(f"Unknown GGUF type {gguf_type!r}: use one of {', '.join(GGUF_TYPES)}")
    started = time.monotonic()
    run = _adapter_of(run_dir)
    check_gguf_export(run)
    merged_dir = merge_adapter(run.path, _part(progress, 0.0, 0.3))
    target = run.path / "export" / f"gguf-{gguf_type}"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        gguf = write_gguf(
            merged_dir, tmp / f"{run.path.name}-{gguf_type}.gguf", gguf_type, run.path.name, _part(progress, 0.3, 0.6)
        )
        if progress:
            progress(0.6, "loading the GGUF back and comparing it with the merged model")
        questions, questions_from = verification_questions(run)
        check = verify_gguf(merged_dir, gguf, gguf_type, questions, questions_from)
        if not check.ok:
            raise UserInputError(
                f"The {gguf_type} GGUF does not compute what the merged model computes, so it was not kept: "
                f"{check.summary()}"
            )
        config = read_yaml_mapping(run.config)
        tokenizer = load_tokenizer(ModelSource(str(merged_dir)))
        modelfile = build_modelfile(gguf.name, tokenizer, str(config.get("system_prompt") or ""))
        (tmp / "Modelfile").write_text(modelfile.text, encoding="utf-8")
        (tmp / "verification.json").write_text(
            json.dumps(asdict(check), indent=1, ensure_ascii=False), encoding="utf-8"
        )
        (tmp / CARD).write_text(_gguf_card(run, gguf.name, check, modelfile.template_translated), encoding="utf-8")
        _replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        progress(1.0, "done")
    return GgufExport(
        folder=target,
        gguf=target / gguf.name,
        modelfile=target / "Modelfile",
        check=check,
        template_translated=modelfile.template_translated,
        elapsed_s=round(time.monotonic() - started, 1),
    )


# ------------------------------------------------------------------------------------------- cli
def export_run(run_dir: str | Path, to: str, gguf_type: str = "f16", progress: Progress | None = None) -> str:
    """Export one way (`to` in EXPORT_TARGETS); a one-paragraph report of what was written."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise UserInputError(f"Run folder not found: {shown_path(folder)}")
    if to == "zip":
        return f"adapter zip: {zip_adapter(folder)}"
    if to == "merged":
        return f"merged model: {merge_adapter(folder, progress)}"
    if to == "gguf":
        result = export_gguf(folder, gguf_type, progress)
        size_mb = result.gguf.stat().st_size / 1e6
        lines = [
            f"GGUF ({gguf_type}, {size_mb:.1f} MB): {result.gguf}",
            f"Ollama: cd {result.folder} && ollama create {folder.name.lower()} -f Modelfile",
            f"check: {result.check.summary()}",
            f"time: {result.elapsed_s} s",
        ]
        if not result.template_translated:
            lines.append("note: the chat template is not ChatML, so the Modelfile has no TEMPLATE (see its comment)")
        return "\n".join(lines)
    raise UserInputError(f"Unknown export {to!r}: use one of {', '.join(EXPORT_TARGETS)}")


def _print_progress() -> Progress:
    """One stderr line per stage (a tensor-by-tensor stage prints its first tensor only)."""
    started, last = time.monotonic(), {"stage": None}

    def show(share: float, message: str) -> None:
        stage = message.split(":")[0]
        if stage != last["stage"]:
            print(f"[{share:4.0%} {time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)
            last["stage"] = stage

    return show


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.export", description="Export a run's adapter: zip, merged model, or GGUF + Modelfile."
    )
    parser.add_argument("run", metavar="RUN", help="the run folder (holds config.yaml and adapter/)")
    parser.add_argument("--to", choices=EXPORT_TARGETS, required=True, help="what to write")
    parser.add_argument("--gguf-type", choices=GGUF_TYPES, default=None, help="GGUF tensor type (default f16)")
    args = parser.parse_args(argv)  # a wrong choice: argparse prints the allowed values, exit 2
    if args.gguf_type and args.to != "gguf":
        parser.error("--gguf-type applies to --to gguf only")
    # bitsandbytes (imported with peft) logs a harmless kernel notice with no handler set; library
    # progress bars would drown the stage lines this command prints.
    logging.getLogger("bitsandbytes").addHandler(logging.NullHandler())
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        print(export_run(args.run, args.to, args.gguf_type or "f16", _print_progress()))
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
