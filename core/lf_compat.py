"""LLaMA-Factory's SFT YAML files, run as they are: one table says what each of its keys means here.

`python -m core.train lf_sft.yaml` reads a LLaMA-Factory LoRA/QLoRA SFT file through `from_lf`
(config_from_dict calls it): a file is LLaMA-Factory's when it holds a key of the table that is not
one of ours (stage, do_train, finetuning_type, ...), so our own YAML reads exactly as before. Keys
are then
  same     the TrainConfig field of that name, same meaning (LLaMA-Factory's default when absent)
  mapped   a TrainConfig field under another name or another encoding
  checked  honoured only with the values listed (we do that already); any other value is refused
  ignored  steers only LLaMA-Factory's own machinery; changes nothing here; listed once on the CLI
`to_lf_yaml` writes the reverse, and docs/llamafactory.md is generated from this table
(`python -m core.lf_compat --table`; a test checks the committed copy).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from core.config import FIELDS, TrainConfig
from core.errors import UserInputError

SAME, MAPPED, CHECKED, IGNORED = "same", "mapped", "checked", "ignored"
_ABSENT = object()
DOC_PATH = "docs/llamafactory.md"


@dataclass(frozen=True)
class LFKey:
    name: str
    kind: str
    note: str
    field: str = ""  # same/mapped: the TrainConfig field it sets
    accepts: tuple = ()  # checked (and mapped, when set): the values honoured; null is "not set"
    lf_default: Any = _ABSENT  # LLaMA-Factory's value when the file leaves the key out
    to_ours: Callable[[Any], Any] | None = None  # mapped: LF value -> ours
    to_lf: Callable[[Any], Any] | None = None  # mapped: ours -> LF value (None: leave the key out)
    section: str = ""  # where to_lf_yaml writes it


def _same(name: str, section: str, note: str = "", **kw: Any) -> LFKey:
    return LFKey(name, SAME, note, field=name, section=section, **kw)


def _checked(name: str, accepts: tuple, note: str) -> LFKey:
    return LFKey(name, CHECKED, note, accepts=accepts)


def _ignored(name: str, note: str) -> LFKey:
    return LFKey(name, IGNORED, note)


PRECISION = "precision is chosen from the device: bf16 where the GPU has it, else fp16; on the CPU, cpu_bf16"
NO_EFFECT = "LLaMA-Factory's own machinery (caching, workers, logging, plotting): no effect here"
# fmt: off
KEYS: tuple[LFKey, ...] = (
    # --- model ---
    _same("model_name_or_path", "model", "required in a LLaMA-Factory file"),
    LFKey("quantization_bit", MAPPED, "4 (QLoRA nf4) or 8 (LLM.int8), bitsandbytes; 2, 3, 5, 6 (hqq) are refused",
          field="quantization_bit", accepts=(4, 8, "4", "8", "none"), section="model",
          to_ours=lambda v: "none" if v is None else str(v), to_lf=lambda v: None if v == "none" else int(v)),
    _checked("quantization_method", ("bnb", "bitsandbytes"), "quantization is bitsandbytes here (not hqq or eetq)"),
    _checked("quantization_type", ("nf4",), "4-bit quantization is nf4 here (not fp4)"),
    _checked("double_quantization", (True,), "4-bit quantization always uses double quantization here"),
    _same("template", "model", "not applied: the tokenizer's own chat template always renders; the run checks "
          "that it writes a user turn as LLaMA-Factory's template does, and stops before training if not"),
    _ignored("trust_remote_code", "models load with transformers' built-in code; one that needs its own fails to load"),
    _ignored("flash_attn", "the attention kernel; same results (sdpa here)"),
    _ignored("enable_liger_kernel", "fused kernels; same results"),
    _ignored("use_unsloth", "fused kernels; same results"),
    _ignored("low_cpu_mem_usage", NO_EFFECT),
    _checked("use_fast_tokenizer", (True,), "a fast tokenizer is needed to find the trained tokens"),
    _checked("model_revision", ("main",), "models load at their main revision"),
    _checked("rope_scaling", (), "RoPE scaling is not applied here"),
    _checked("shift_attn", (False,), "shift short attention is not applied here"),
    _checked("resize_vocab", (False,), "the vocabulary is not resized here"),
    _checked("adapter_name_or_path", (), "training always starts a new adapter here (resume: true continues a run)"),
    # --- method ---
    _checked("stage", ("sft",), "only supervised fine-tuning (sft) is done here; not pt, rm, ppo, dpo or kto"),
    _ignored("do_train", "always true here"),
    _ignored("do_eval", "eval runs every eval_steps when val_size > 0"),
    _checked("do_predict", (False,), "prediction runs are not done here"),
    _checked("finetuning_type", ("lora",), "only LoRA (QLoRA with quantization_bit) is trained here; not full or freeze"),
    _same("lora_rank", "method"),
    _same("lora_alpha", "method", "absent: 2 x lora_rank, as LLaMA-Factory", lf_default=lambda v: 2 * int(v.get("lora_rank", 8))),
    _same("lora_dropout", "method", lf_default=0.0),
    _same("lora_target", "method", "all, or comma-separated module names"),
    LFKey("loraplus_lr_ratio", MAPPED, "null or absent: off (0 here)", field="loraplus_lr_ratio", section="method",
          to_ours=lambda v: 0.0 if v is None else v, to_lf=lambda v: v or None),
    _checked("loraplus_lr_embedding", (1e-6,), "LoRA+ embedding learning rate is not applied here"),
    _checked("use_dora", (False,), "DoRA is not trained here"),
    _checked("use_rslora", (False,), "rank-stabilised LoRA scaling is not applied here"),
    _checked("pissa_init", (False,), "PiSSA initialisation is not applied here"),
    _checked("create_new_adapter", (False,), "one adapter is trained here"),
    _checked("additional_target", (), "only LoRA weights train here"),
    _checked("use_galore", (False,), "GaLore is not used here"),
    _checked("use_badam", (False,), "BAdam is not used here"),
    _checked("use_apollo", (False,), "APOLLO is not used here"),
    _checked("pure_bf16", (False,), "precision is chosen from the device here"),
    LFKey("disable_gradient_checkpointing", MAPPED, "gradient_checkpointing = not this; absent: on, as LLaMA-Factory",
          field="gradient_checkpointing", lf_default=True, section="method",
          to_ours=lambda v: not v, to_lf=lambda v: None if v else True),
    # --- dataset ---
    _same("dataset", "dataset", "names in dataset_dir/dataset_info.json, comma-separated; required"),
    _same("dataset_dir", "dataset", "", lf_default="data"),
    _same("cutoff_len", "dataset", lf_default=2048),
    LFKey("max_samples", MAPPED, "the first this many of each dataset; null or absent: all (0 here)",
          field="max_samples", section="dataset", to_ours=lambda v: 0 if v is None else v, to_lf=lambda v: v or None),
    LFKey("default_system", MAPPED, "put in front of conversations that have none", field="system_prompt",
          section="dataset", to_ours=lambda v: v or "", to_lf=lambda v: v or None),
    _same("train_on_prompt", "dataset"),
    _same("val_size", "dataset", "a share in [0, 1); a count of examples is refused"),
    LFKey("packing", MAPPED, "false: every example its own row (the maths of packing here, which is on by default "
          "and packs with per-example attention); true (attention across examples) is refused",
          field="packing", accepts=(False,), section="dataset", to_ours=lambda v: False,
          to_lf=lambda v: None if v else False),
    _checked("neat_packing", (False,), "packing to cutoff_len rows changes the examples per step; packing here keeps them"),
    _checked("mask_history", (False,), "every assistant turn is trained here"),
    _checked("mix_strategy", ("concat",), "several datasets are concatenated here"),
    _checked("interleave_probs", (), "several datasets are concatenated here"),
    _checked("streaming", (False,), "datasets are read whole here"),
    _checked("eval_dataset", (), "the held-out set is val_size of the dataset here"),
    _checked("tokenized_path", (), "datasets are tokenized at each run here"),
    _ignored("overwrite_cache", NO_EFFECT),
    _ignored("preprocessing_num_workers", NO_EFFECT),
    _ignored("dataloader_num_workers", NO_EFFECT),
    _ignored("buffer_size", NO_EFFECT),
    # --- output ---
    _same("output_dir", "output", "the run folder"),
    _same("logging_steps", "output"),
    _same("save_steps", "output"),
    _same("save_total_limit", "output"),
    _ignored("plot_loss", "the loss curve is drawn from events.jsonl"),
    _ignored("overwrite_output_dir", "a folder holding a run is never overwritten: choose another, or resume: true"),
    _ignored("save_only_model", "checkpoints here are always resumable"),
    _ignored("report_to", NO_EFFECT),
    _ignored("logging_dir", NO_EFFECT),
    _ignored("run_name", NO_EFFECT),
    _ignored("disable_tqdm", NO_EFFECT),
    _ignored("include_num_input_tokens_seen", "tokens per second are always logged here"),
    _ignored("print_param_status", NO_EFFECT),
    _checked("save_strategy", ("steps",), "checkpoints are saved every save_steps"),
    _checked("logging_strategy", ("steps",), "steps are logged every logging_steps"),
    _checked("push_to_hub", (False,), "nothing is uploaded from here"),
    # --- train ---
    _same("per_device_train_batch_size", "train", lf_default=8),
    _same("gradient_accumulation_steps", "train", lf_default=1),
    _same("learning_rate", "train", lf_default=5e-5),
    _same("num_train_epochs", "train"),
    _same("max_steps", "train"),
    _same("lr_scheduler_type", "train", lf_default="linear"),
    _same("warmup_ratio", "train", lf_default=0.0),
    _same("weight_decay", "train"),
    _same("max_grad_norm", "train"),
    _same("seed", "train"),
    _ignored("bf16", PRECISION),
    _ignored("fp16", PRECISION),
    _ignored("ddp_timeout", NO_EFFECT),
    _ignored("ddp_find_unused_parameters", NO_EFFECT),
    _checked("deepspeed", (), "DeepSpeed configs are not read here (num_processes and distributed are ours)"),
    _checked("resume_from_checkpoint", (), "resume: true continues from the run folder's newest checkpoint"),
    _checked("optim", ("adamw_torch", "adamw_torch_fused"), "the optimizer is AdamW (torch) here"),
    _checked("adam_beta1", (0.9,), "AdamW runs with its default betas here"),
    _checked("adam_beta2", (0.999,), "AdamW runs with its default betas here"),
    _checked("adam_epsilon", (1e-8,), "AdamW runs with its default epsilon here"),
    _checked("warmup_steps", (0,), "give warmup_ratio (a share of the steps) instead"),
    _checked("lr_scheduler_kwargs", ({},), "schedulers run with their default arguments here"),
    _checked("neftune_noise_alpha", (0,), "NEFTune noise is not applied here"),
    _checked("load_best_model_at_end", (False,), "the final adapter is kept (the best-recall one with probes)"),
    _checked("compute_accuracy", (False,), "eval computes the loss only here"),
    _checked("predict_with_generate", (False,), "prediction runs are not done here"),
    # --- eval ---
    _same("eval_steps", "eval"),
    _checked("eval_strategy", ("steps", "no"), "eval runs every eval_steps when val_size > 0 (not per epoch)"),
    _ignored("per_device_eval_batch_size", "eval batches are per_device_train_batch_size here; no effect on training"),
)
# fmt: on
BY_NAME: dict[str, LFKey] = {key.name: key for key in KEYS}
assert len(BY_NAME) == len(KEYS) and all(k.field in FIELDS for k in KEYS if k.field), "LLaMA-Factory key table"
# A file is LLaMA-Factory's when it holds one of these: never a key of ours, so our files read as before.
LF_ONLY = frozenset(name for name in BY_NAME if name not in FIELDS)
REQUIRED = ("model_name_or_path", "dataset")
SECTIONS = ("model", "method", "dataset", "output", "train", "eval")


def is_lf_config(values: dict[str, Any]) -> bool:
    return any(key in LF_ONLY for key in values)


def _refusal(key: LFKey, value: Any) -> str:
    allowed = " or ".join(repr(v) for v in key.accepts) if key.accepts else ""
    honoured = f" (honoured: {allowed})" if allowed else ""
    return f"{key.name}: {value!r} cannot be honoured{honoured}: {key.note}"


def from_lf(values: dict[str, Any], problems: list[str], notes: list[str]) -> dict[str, Any]:
    """A LLaMA-Factory file's keys as TrainConfig keys; our own files come back unchanged. Refusals
    go to `problems`; the keys ignored and the LLaMA-Factory defaults applied go to `notes`."""
    if not is_lf_config(values):
        return values
    ours: dict[str, Any] = {}
    ignored: list[str] = []
    for name, raw in values.items():
        key = BY_NAME.get(name)
        if key is None:
            if name in FIELDS:
                ours[name] = raw  # one of our own keys, e.g. probes: auto beside LLaMA-Factory's
            else:
                close = difflib.get_close_matches(str(name), [*BY_NAME, *FIELDS], n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"unknown key {str(name)!r}{hint}: neither a LLaMA-Factory key honoured here nor one of ours "
                    f"(see {DOC_PATH})"
                )
            continue
        if key.kind == IGNORED:
            ignored.append(name)
            continue
        if (key.kind == CHECKED or key.accepts) and raw is not None and raw not in key.accepts:
            problems.append(_refusal(key, raw))
            continue
        if key.kind == CHECKED:
            continue
        ours[key.field] = key.to_ours(raw) if key.to_ours else raw
    problems += [f"{name} is required in a LLaMA-Factory config" for name in REQUIRED if name not in values]
    defaults = {}
    for key in KEYS:
        if key.lf_default is not _ABSENT and key.field not in ours:
            defaults[key.field] = key.lf_default(values) if callable(key.lf_default) else key.lf_default
    ours.update(defaults)
    if ignored:
        notes.append(f"ignored (they steer only LLaMA-Factory's own machinery): {', '.join(ignored)}")
    if defaults:
        shown = ", ".join(f"{k}={v}" for k, v in defaults.items())
        notes.append(f"LLaMA-Factory's defaults for keys the file leaves out: {shown}")
    return ours


def to_lf_yaml(config: TrainConfig) -> str:
    """The LLaMA-Factory YAML of `config`: its keys by section, then our keys that it does not have
    (non-default ones only). from_lf reads it back to the same TrainConfig."""
    values = config.to_dict()
    lines = ["### LLaMA-Factory SFT config (written by LoRA Tailor)"]
    by_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    by_section["method"] = {"stage": "sft", "do_train": True, "finetuning_type": "lora"}
    for key in KEYS:
        if key.kind not in (SAME, MAPPED):
            continue
        value = values[key.field]
        value = key.to_lf(value) if key.to_lf else value
        if value is not None and not (key.field == "template" and value == ""):
            by_section[key.section][key.name] = value
    for section in SECTIONS:
        if by_section[section]:
            lines += [f"### {section}", _dump(by_section[section])]
    covered = {key.field for key in KEYS if key.field}
    extra = {name: value for name, value in values.items() if name not in covered and value != FIELDS[name].default}
    if extra:
        lines += [
            "### LoRA Tailor only: LLaMA-Factory refuses these keys (delete them, or run it with ALLOW_EXTRA_ARGS=1)",
            _dump(extra),
        ]
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


def _dump(values: dict[str, Any]) -> str:
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=1000)


# ------------------------------------------------------------------------------------- templates
# LLaMA-Factory's templates by the user turn each writes ({} = the content): enough to tell whether
# the tokenizer's own chat template formats conversations the same way.
_CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
_GEMMA = "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n"
_LLAMA3 = "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
_GLM4 = "<|user|>\n{}<|assistant|>"
_DEEPSEEK3 = "<｜User｜>{}<｜Assistant｜>"
_GRANITE = "<|start_of_role|>user<|end_of_role|>{}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"
_TEMPLATE_GROUPS: dict[str, tuple[str, ...]] = {
    _CHATML: (
        "chatml",
        "chatml_de",
        "qwen",
        "qwen3",
        "qwen3_nothink",
        "yi",
        "smollm",
        "smollm2",
        "dbrx",
        "cpm4",
        "intern2",
        "lfm2",
        "mimo",
        "opencoder",
        "falcon_h1",
    ),
    _GEMMA: ("gemma", "gemma2"),
    _LLAMA3: ("llama3",),
    _GLM4: ("glm4", "glm4_moe", "glmz1"),
    _DEEPSEEK3: ("deepseek3", "deepseekr1"),
    _GRANITE: ("granite3", "granite4"),
    "[INST] {} [/INST]": ("llama2", "llama2_zh"),
    "[INST] {}[/INST]": ("mistral",),
    "[INST]{}[/INST]": ("ministral",),
    "<|user|>\n{}<|end|>\n<|assistant|>\n": ("phi", "phi_small"),
    "<|im_start|>user<|im_sep|>{}<|im_end|><|im_start|>assistant<|im_sep|>": ("phi4",),
    "<|user|>{}<|end|><|assistant|>": ("phi4_mini",),
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>": ("cohere",),
    "<|start|>user<|message|>{}<|end|><|start|>assistant": ("gpt_oss",),
    "<|user|>\n{}<|assistant|>\n": ("olmo",),
    "<|user|>\n{}<|assistant|>\n ": ("zephyr",),
    "User: {}\n\nAssistant:": ("deepseek",),
    "### Instruction:\n{}\n\n### Response:\n": ("alpaca",),
    "Human: {}\nAssistant:": ("default",),
    "USER: {} ASSISTANT:": ("vicuna",),
    "{}": ("empty",),
}
LF_TEMPLATES: dict[str, str] = {name: turn for turn, names in _TEMPLATE_GROUPS.items() for name in names}
_PROBE_USER, _PROBE_REPLY = "Which colour is the sky?", "Blue."


def check_template(name: str, tokenizer) -> str:
    """'' when no template is named; a note when the tokenizer's chat template writes a user turn as
    LLaMA-Factory's `name` does; UserInputError (before any training) when it does not."""
    name = (name or "").strip()
    if not name:
        return ""
    if name not in LF_TEMPLATES:
        close = difflib.get_close_matches(name, list(LF_TEMPLATES), n=3)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise UserInputError(
            f"template {name!r} is not a LLaMA-Factory template this tool can check{hint}. The tokenizer's "
            f"own chat template is always the one used: remove `template` to train with it."
        )
    from core.template import ChatEncoder

    rendered = ChatEncoder(tokenizer).render(
        [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_REPLY}]
    )
    expected = LF_TEMPLATES[name].format(_PROBE_USER)
    if name != "empty" and expected in rendered:
        return f"template {name!r}: the tokenizer's own chat template writes a user turn the same way; it is used"
    at = rendered.find(_PROBE_USER)
    theirs = rendered[max(at - 40, 0) : at + len(_PROBE_USER) + 40] if at >= 0 else rendered[:120]
    raise UserInputError(
        f"template {name!r} does not match the tokenizer's own chat template: LLaMA-Factory's {name} writes a user "
        f"turn as {expected!r}, the tokenizer as {theirs!r}. Conversations are always rendered here with the "
        f"tokenizer's template (the one chat and export use): remove `template` to train with it."
    )


# ------------------------------------------------------------------------------------ the table
def table_markdown() -> str:
    """docs/llamafactory.md: every key of the table, what it does here."""
    lines = [
        "# LLaMA-Factory configs in LoRA Tailor",
        "",
        "<!-- generated by `python -m core.lf_compat --table`; tests/test_lf_compat.py checks it -->",
        "",
        "`python -m core.train lf_sft.yaml` runs a LLaMA-Factory LoRA/QLoRA SFT YAML unchanged. A file is read",
        "as LLaMA-Factory's when it holds one of its keys that LoRA Tailor does not have (`stage`, `do_train`,",
        "`finetuning_type`, ...); then every key below means what this table says, a key it leaves out takes",
        "LLaMA-Factory's default (column *absent*), the ignored keys are listed once on the command line, and any",
        "other key or value is refused with the reason. `dataset` names are looked up in",
        "`<dataset_dir>/dataset_info.json` (`file_name`, `formatting`, `columns`, `tags`, `num_samples`).",
        "The Train tab's *Preview config* shows the same run as a LLaMA-Factory YAML.",
        "",
        "| LLaMA-Factory key | here | absent | notes |",
        "|---|---|---|---|",
    ]
    for key in KEYS:
        honoured = ", ".join(f"`{v!r}`" for v in key.accepts)
        here = {
            SAME: "same",
            MAPPED: f"`{key.field}`" + (f" (honoured: {honoured})" if honoured else ""),
            CHECKED: f"honoured: {honoured}" if honoured else "refused",
            IGNORED: "ignored",
        }[key.kind]
        absent = (
            "" if key.lf_default is _ABSENT else "2 x lora_rank" if callable(key.lf_default) else repr(key.lf_default)
        )
        lines.append(f"| `{key.name}` | {here} | {absent} | {key.note} |")
    lines += [
        "",
        "## dataset_info.json",
        "",
        "Entries are read as LLaMA-Factory reads them (core/dataset_info.py): `columns` default to its names",
        "(alpaca `instruction`, `input`, `output`; `system`, `history` and `tools` only when mapped; sharegpt",
        "`conversations` with tags `from`/`value`/`human`/`gpt`/`system`/`function_call`/`observation`; openai",
        "entries default to `role`/`content`/`user`/`assistant`/`system`/`tool`), an alpaca `input` joins the",
        "instruction after one newline, `num_samples` draws that many by `seed` (more than the file repeats it),",
        "`max_samples` keeps the first ones of each dataset, and several datasets are concatenated in order.",
        "Refused, naming the entry: an unknown name (the registered ones are listed), a missing file, a column",
        "no record has, a hub-only entry (`hf_hub_url`, `ms_hub_url`, `script_url`: training here is offline),",
        "`ranking`, image/video/audio or preference columns, files other than .json/.jsonl, and a",
        "dataset_info.json that is not a JSON object (with its line and column). One bad dataset stops the run:",
        "nothing trains on part of what `dataset` names.",
        "",
        "`template` names LLaMA-Factory knows and this tool checks: " + ", ".join(f"`{n}`" for n in LF_TEMPLATES) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["--table"]:
        print("usage: python -m core.lf_compat --table   (prints docs/llamafactory.md)", file=sys.stderr)
        sys.exit(2)
    sys.stdout.write(table_markdown())
