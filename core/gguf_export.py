"""Write a merged Hugging Face model folder as one GGUF file, for llama.cpp, Ollama and LM Studio.

The converter: the `gguf` package (the writer llama.cpp's own converter uses, with its tensor name
maps and its Q8_0 quantizer) driven by this module. llama.cpp's `convert_hf_to_gguf.py` is not an
installable package here, so what it does for the architectures below is done in this module:

- hyperparameters under llama.cpp's key names; the tokenizer as a byte-level BPE ("gpt2") vocabulary
  with token types, merges, special ids and the chat template (`tokenizer.chat_template`);
- tensors renamed through gguf's TensorNameMap; 1-D tensors (norms, biases) stay float32, matrices
  become f16 or Q8_0 (a matrix whose rows do not split into 32-value blocks stays f16, as in
  llama.cpp);
- llama.cpp's `llama` graph rotates interleaved pairs of each head's q/k dimensions, where the HF
  model rotates its first half against its second: q_proj and k_proj rows are permuted to match
  (`_rope_interleave`; transformers' GGUF loader undoes exactly this on load).

Supported: LlamaForCausalLM and MistralForCausalLM (written as the `llama` architecture, which is
how llama.cpp runs Mistral), Qwen2ForCausalLM (no permutation: llama.cpp's qwen2 graph rotates
halves). Anything else is refused by `check_convertible` before a file is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserInputError

Progress = Callable[[float, str], None]  # (share done in [0, 1], what is happening)

GGUF_TYPES = ("f16", "q8_0")
QUANT_BLOCK = 32  # values per Q8_0 block: a row length must be a multiple of it


@dataclass(frozen=True)
class Architecture:
    gguf_name: str  # gguf.MODEL_ARCH_NAMES value: "llama", "qwen2"
    permute_qk: bool  # llama.cpp's graph for it rotates interleaved pairs (see _rope_interleave)


ARCHITECTURES = {
    "LlamaForCausalLM": Architecture("llama", permute_qk=True),
    "MistralForCausalLM": Architecture("llama", permute_qk=True),
    "Qwen2ForCausalLM": Architecture("qwen2", permute_qk=False),
}

# llama.cpp picks its pre-tokenizer regex by the name in `tokenizer.ggml.pre`. The HF tokenizer's
# pre-tokenizer is recognised by shape, and only names llama.cpp knows are written.
PLAIN_BYTE_LEVEL = "gpt-2"  # ByteLevel with its built-in GPT-2 regex
DIGITS_THEN_BYTE_LEVEL = "smollm"  # single digits split off first, then GPT-2's regex (SmolLM's tokenizer)
SPLIT_REGEX_NAMES = ("llama-bpe", "qwen2")  # Split(regex) + ByteLevel(use_regex=False)


@dataclass(frozen=True)
class ConversionPlan:
    architecture: Architecture
    pre_tokenizer: str


def _split_regexes() -> dict[str, str]:
    """regex -> llama.cpp name, from the table transformers' GGUF loader reads `tokenizer.ggml.pre`
    with, so a file written here tokenizes the same when transformers loads it back."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    return {GGUF_PRE_TOKENIZER_SPLITS[name]: name for name in SPLIT_REGEX_NAMES}


def _pre_tokenizer_name(pre: dict | None) -> str | None:
    if pre is None:
        return None
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return PLAIN_BYTE_LEVEL
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2 or steps[1].get("type") != "ByteLevel":
        return None
    first, byte_level = steps
    if first.get("type") == "Digits" and first.get("individual_digits") and byte_level.get("use_regex", True):
        return DIGITS_THEN_BYTE_LEVEL
    if first.get("type") == "Split" and not byte_level.get("use_regex", True):
        return _split_regexes().get((first.get("pattern") or {}).get("Regex"))
    return None


def check_convertible(model_config: dict[str, Any], tokenizer_json: dict[str, Any]) -> ConversionPlan:
    """What the conversion will do, or every reason it cannot (UserInputError), before any file is
    written. `model_config` is config.json, `tokenizer_json` the tokenizer.json of the model."""
    problems = []
    architectures = model_config.get("architectures") or [model_config.get("model_type", "?")]
    architecture = ARCHITECTURES.get(architectures[0])
    if architecture is None:
        problems.append(
            f"architecture {architectures[0]} is not one this converter writes ({', '.join(ARCHITECTURES)})"
        )
    rope = model_config.get("rope_parameters") or model_config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        problems.append(f"rope scaling {rope_type!r} is not written by this converter (only unscaled rope)")
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        problems.append(
            f"the tokenizer is {model.get('type', 'unknown')}{' with byte fallback' if model.get('byte_fallback') else ''}"
            ", not a byte-level BPE (gpt2) vocabulary: SentencePiece vocabularies are not written by this converter"
        )
    pre = _pre_tokenizer_name(tokenizer_json.get("pre_tokenizer"))
    if pre is None:
        problems.append(
            "the tokenizer's pre-tokenizer is not one llama.cpp names (GPT-2's byte level, SmolLM's, Llama 3's "
            f"or Qwen2's): {json.dumps(tokenizer_json.get('pre_tokenizer'))[:200]}"
        )
    if problems:
        raise UserInputError("This model cannot be exported as GGUF:", problems)
    return ConversionPlan(architecture, pre)


# ------------------------------------------------------------------------------------- tensors
def _rope_interleave(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """q_proj / k_proj rows [heads * head_dim, hidden]: within each head, row i of the first half
    and row i of the second half become rows 2i and 2i+1 (HF's rotate-half pairs (i, i + d/2) are
    llama.cpp's adjacent pairs (2i, 2i + 1))."""
    rows = weight.shape[0]
    halves = weight.reshape(num_heads, 2, rows // num_heads // 2, *weight.shape[1:])
    return halves.swapaxes(1, 2).reshape(weight.shape)


def _encoded(weight: np.ndarray, gguf_type: str):
    """(data, ggml type) for one tensor: 1-D stays float32, a matrix becomes f16 or Q8_0."""
    from gguf import GGMLQuantizationType, quants

    if weight.ndim == 1:
        return weight.astype(np.float32), GGMLQuantizationType.F32
    if gguf_type == "q8_0" and weight.shape[-1] % QUANT_BLOCK == 0:
        return quants.quantize(weight.astype(np.float32), GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0
    return weight.astype(np.float16), GGMLQuantizationType.F16


def _written_keys(model_dir: Path, config) -> dict[Path, list[str]]:
    """The safetensors keys written, by file: all but a tied lm_head.weight (llama.cpp reads a
    missing output.weight as tied to token_embd)."""
    from safetensors import safe_open

    keys = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            keys[file] = [k for k in handle.keys() if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    return keys


def _tensors(keys: dict[Path, list[str]], config, plan: ConversionPlan):
    """(gguf name, float32 array) per written key, q/k permuted where the architecture needs it."""
    import gguf
    from safetensors import safe_open

    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == plan.architecture.gguf_name)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    for file, file_keys in keys.items():
        with safe_open(str(file), framework="pt") as handle:
            for key in file_keys:
                gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise UserInputError(
                        f"{file.name}: tensor {key} has no GGUF name for {plan.architecture.gguf_name}"
                    )
                weight = handle.get_tensor(key).float().numpy()
                if plan.architecture.permute_qk and ".self_attn.q_proj." in key:
                    weight = _rope_interleave(weight, heads)
                elif plan.architecture.permute_qk and ".self_attn.k_proj." in key:
                    weight = _rope_interleave(weight, kv_heads)
                yield gguf_name, weight


# ----------------------------------------------------------------------------------- tokenizer
def _vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens by id for every embedding row, and their llama.cpp token types."""
    from gguf import TokenType

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder  # id -> AddedToken (content, special)
    tokens, types = [], []
    for index in range(vocab_size):
        if index in added:
            tokens.append(added[index].content)
            types.append(TokenType.CONTROL if added[index].special else TokenType.USER_DEFINED)
        elif index in by_id:
            tokens.append(by_id[index])
            types.append(TokenType.NORMAL)
        else:  # embedding rows past the vocabulary (padded to a multiple): never produced
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
    return tokens, types


def _merges(tokenizer_json: dict[str, Any]) -> list[str]:
    merges = tokenizer_json["model"].get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def _adds_special(tokenizer) -> tuple[bool, bool]:
    """Whether encoding adds bos at the start / eos at the end (llama.cpp must do the same)."""
    plain = tokenizer("a", add_special_tokens=False).input_ids
    full = tokenizer("a").input_ids
    bos = len(full) > len(plain) and tokenizer.bos_token_id is not None and full[0] == tokenizer.bos_token_id
    eos = len(full) > len(plain) and tokenizer.eos_token_id is not None and full[-1] == tokenizer.eos_token_id
    return bos, eos


def _add_tokenizer(writer, tokenizer, tokenizer_json: dict[str, Any], vocab_size: int, pre: str) -> None:
    tokens, types = _vocabulary(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(tokenizer_json))
    for token_id, add in (
        (tokenizer.bos_token_id, writer.add_bos_token_id),
        (tokenizer.eos_token_id, writer.add_eos_token_id),
        (tokenizer.unk_token_id, writer.add_unk_token_id),
        (tokenizer.pad_token_id, writer.add_pad_token_id),
    ):
        if token_id is not None:
            add(token_id)
    add_bos, add_eos = _adds_special(tokenizer)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    writer.add_chat_template(tokenizer.chat_template)


# ------------------------------------------------------------------------------------- writing
def _add_hparams(writer, config, gguf_type: str, name: str) -> None:
    from gguf import LlamaFileType

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads or heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(LlamaFileType.MOSTLY_F16 if gguf_type == "f16" else LlamaFileType.MOSTLY_Q8_0)


def read_tokenizer_json(tokenizer) -> dict[str, Any]:
    return json.loads(tokenizer.backend_tokenizer.to_str())


def write_gguf(
    model_dir: str | Path, target: str | Path, gguf_type: str, name: str, progress: Progress | None = None
) -> Path:
    """Write the HF model folder `model_dir` (safetensors + tokenizer) as the GGUF file `target`.

    Written to `<target>.part` and renamed, so a file at `target` is always complete.
    """
    import gguf
    from transformers import AutoConfig, AutoTokenizer

    if gguf_type not in GGUF_TYPES:
        raise UserInputError(f"Unknown GGUF type {gguf_type!r}: use one of {', '.join(GGUF_TYPES)}")
    model_dir, target = Path(model_dir), Path(target)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer_json = read_tokenizer_json(tokenizer)
    plan = check_convertible(json.loads((model_dir / "config.json").read_text(encoding="utf-8")), tokenizer_json)
    config = AutoConfig.from_pretrained(model_dir)
    partial = target.with_name(target.name + ".part")
    writer = gguf.GGUFWriter(partial, plan.architecture.gguf_name, use_temp_file=True)
    try:
        _add_hparams(writer, config, gguf_type, name)
        _add_tokenizer(writer, tokenizer, tokenizer_json, config.vocab_size, plan.pre_tokenizer)
        keys = _written_keys(model_dir, config)
        expected = sum(len(file_keys) for file_keys in keys.values())
        for done, (gguf_name, weight) in enumerate(_tensors(keys, config, plan), start=1):
            data, ggml_type = _encoded(weight, gguf_type)
            writer.add_tensor(gguf_name, data, raw_dtype=ggml_type)
            if progress is not None:
                progress(done / expected, f"{gguf_type}: {gguf_name}")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, target)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)
    return target
