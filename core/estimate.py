"""Pre-flight estimate of a run: time per step and in total, and peak memory, before Start.

Memory (bytes, what one training process holds at its peak):
  weights      the base model: linear layers at quantization_bit (4: nf4 + double-quantised scales,
               8: int8), embeddings, output layer and norms in the compute dtype (float32 under 4/8
               bits: prepare_model_for_kbit_training upcasts them)
  lora         LoRA A/B float32 + their gradient + AdamW's two moments: 16 bytes a LoRA parameter
  activations  what autograd keeps for backward over the peak micro-batch's positions, per layer
               (all of them, or with gradient checkpointing each layer's input plus one layer
               recomputed at a time)
  logits       [positions, vocab] float32 copies of the loss: all positions with the model's own
               loss, or one chunk of the trained positions with trained_tokens_loss (core.head_loss)
  runtime      the interpreter, torch and transformers themselves (CPU), or the CUDA context (GPU)

Time: a cost model `seconds a micro-batch = overhead_s + flops / flops_per_s + recompute /
recompute_flops_per_s`, where the flops of a micro-batch (its linear layers, attention and output
layer, forward and backward) and the recompute (gradient checkpointing's second forward of every
layer) follow from the model's config.json and the batch's token lengths, and the three speeds are
measured on this machine by core.calibration, or a rough default.

The model's shape comes from its config.json (Llama-family layout: q/k/v/o and gate/up/down
projections). The token lengths come from a sample of the dataset through the model's own tokenizer
and chat template (core.template.ChatEncoder), the same rendering the trainer uses.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.config import TrainConfig
from core.errors import UserInputError
from core.events import last_event

GIB = 1024**3
FP32_BYTES = 4
# Bytes a weight takes at each quantization_bit: nf4 packs two weights a byte, plus one 8-bit absmax
# per 64 weights and (double quantisation) one float32 per 256 of those; int8 keeps a float32 scale a row.
QUANT_WEIGHT_BYTES = {"4": 0.5 + 1 / 64 + 4 / (64 * 256), "8": 1.0}
LORA_BYTES_PER_PARAM = 4 * FP32_BYTES  # weight, gradient, AdamW exp_avg and exp_avg_sq, all float32
# Per position and layer, in hidden-size (H), intermediate-size (I) and key/value-size (KV) tensors:
# what a Llama layer with LoRA on its projections keeps for backward. The frozen projections keep no
# input for a weight gradient, but LoRA's A needs each projection's input: the attention norm's input
# and output (shared by q/k/v), q and the rotated k/v and sdpa's output for attention, o_proj's input,
# the MLP norm's input and output; gate's output, its SiLU, up's output and down_proj's input.
SAVED_HIDDEN_PER_LAYER = 7
SAVED_KV_PER_LAYER = 2
SAVED_INTERMEDIATE_PER_LAYER = 4
FUSED_SWIGLU_UNSAVED = 1  # fused_swiglu recomputes the SiLU in backward instead of keeping it (core.fused_mlp)
# With fused_lora_dropout on the CPU (p > 0), both norms' outputs are recomputed from their inputs
# in backward, and with fused_swiglu too down_proj's input from gate and up (core.lora_dropout):
# for inputs above its DROPPED_COPY_MAX_ELEMENTS; a smaller one keeps a dropped copy its size instead.
RECOMPUTED_NORM_OUTPUTS, RECOMPUTED_DOWN_INPUT = 2, 1
# LoRA dropout (p > 0) keeps a dropped copy of each adapted projection's input (6 H-sized, 1 I-sized):
# a float copy with peft's dropout module, a 1-byte mask with fused_lora_dropout on the CPU;
# shared_lora_input draws one for q/k/v and one for gate/up (3 H-sized).
DROPOUT_HIDDEN, SHARED_DROPOUT_HIDDEN, DROPOUT_INTERMEDIATE = 6, 3, 1
# Gradients alive while one layer runs backward: the incoming and outgoing residual gradient and the
# MLP's intermediate gradients.
BACKWARD_HIDDEN, BACKWARD_INTERMEDIATE = 2, 2
FULL_LOGITS_COPIES = 3  # logits, their log-softmax, and in backward their gradient ([positions, vocab] each)
CHUNK_LOGITS_COPIES = 2  # one chunk's logits (softmax computed in place) and logsumexp's temporary
CHECKPOINT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # config.json's dtype -> bytes a weight
RUNTIME_BYTES = {"cpu": int(0.6 * GIB), "cuda": int(0.5 * GIB), "mps": int(0.6 * GIB)}
# Rough cost without a calibration: the order of a LoRA step on the default model measured on a
# 2-core AVX2 CPU (DESIGN.md: ~120 tokens/s), per core; a mid-range GPU.
ROUGH_FLOPS_PER_S = {"cpu": 30e9 * (os.cpu_count() or 1), "cuda": 30e12, "mps": 3e12}
ROUGH_OVERHEAD_S = {"cpu": 0.05, "cuda": 0.03, "mps": 0.05}
SAMPLE_CONVERSATIONS = 256  # tokenized for the lengths: enough for the mean and the spread of a batch
ASSUMED_TRAINED_SHARE = 0.5  # without data: half of each example trained
TIGHT_SHARE = 0.9  # a peak above this share of the available memory is flagged as tight
ETA_WINDOW_STEPS = 20  # the ETA follows the rate of the newest steps, not the whole run's average
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a model's config.json."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool
    checkpoint_bytes: int = FP32_BYTES  # a weight in the checkpoint files (config.json's dtype)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each projection of one layer."""
        h, q, kv, i = (
            self.hidden_size,
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
            self.intermediate_size,
        )
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_params(self) -> int:
        """Weights of all layers' projections (the part 4/8-bit quantization shrinks)."""
        return self.num_layers * sum(a * b for a, b in self.linear_shapes().values())

    @property
    def other_params(self) -> int:
        """Embeddings, the output layer (unless tied) and the norms."""
        head = 0 if self.tied_embeddings else self.vocab_size * self.hidden_size
        return self.vocab_size * self.hidden_size + head + (2 * self.num_layers + 1) * self.hidden_size


def model_shape(folder: str | Path) -> ModelShape:
    """The shape from `folder`/config.json; UserInputError naming the missing keys."""
    path = Path(folder) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserInputError(f"Cannot read {path} for the estimate: {err}") from None
    config = raw.get("text_config") or raw  # multimodal models nest the language model's config
    missing = [
        key
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
        if not isinstance(config.get(key), int)
    ]
    if missing:
        raise UserInputError(f"{path} has no {', '.join(missing)}: no estimate for this kind of model.")
    heads = config["num_attention_heads"]
    return ModelShape(
        hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        intermediate_size=config["intermediate_size"],
        vocab_size=config["vocab_size"],
        tied_embeddings=bool(config.get("tie_word_embeddings", raw.get("tie_word_embeddings", False))),
        checkpoint_bytes=CHECKPOINT_BYTES.get(raw.get("dtype") or raw.get("torch_dtype"), FP32_BYTES),
    )


def lora_modules(lora_target: str) -> tuple[str, ...]:
    """The projections LoRA adapts: all of them for 'all', else those named (others adapt nothing here)."""
    if lora_target.strip() == "all":
        return LINEAR_MODULES
    names = {t.strip() for t in lora_target.split(",")}
    return tuple(name for name in LINEAR_MODULES if name in names)


def lora_params(shape: ModelShape, config: TrainConfig) -> int:
    shapes = shape.linear_shapes()
    return shape.num_layers * sum(config.lora_rank * sum(shapes[name]) for name in lora_modules(config.lora_target))


# ----------------------------------------------------------------------------------- the batches
@dataclass(frozen=True)
class BatchTokens:
    """The micro-batches of a run, as the model sees them (padding included unless packed)."""

    positions: float  # mean positions a micro-batch runs through the model
    attention_pairs: float  # mean (query, key) pairs a micro-batch's causal attention scores
    trained: float  # mean positions a micro-batch predicts a trained token at
    peak_positions: int  # the largest micro-batch: what memory must hold
    peak_trained: int
    from_data: bool  # measured on the dataset's tokens; False: every example taken at cutoff_len


def batch_tokens(lengths: np.ndarray, trained: np.ndarray, config: TrainConfig, seed: int = 0) -> BatchTokens:
    """Micro-batches of per_device_train_batch_size examples of these (length, trained tokens), cut
    to cutoff_len, in a shuffled order as the trainer draws them; padded to the longest of each
    batch unless packing."""
    cut = np.minimum(np.asarray(lengths, np.int64), config.cutoff_len)
    kept = np.minimum(np.asarray(trained, np.int64), cut)
    order = np.random.default_rng(seed).permutation(len(cut))
    b = config.per_device_train_batch_size
    rows = [order[i : i + b] for i in range(0, len(order), b)]
    if config.packing:
        positions = [cut[r].sum() for r in rows]
        pairs = [(cut[r] * (cut[r] + 1) // 2).sum() for r in rows]
        peak = int(np.sort(cut)[-b:].sum())
    else:
        positions = [len(r) * cut[r].max() for r in rows]
        pairs = [len(r) * cut[r].max() * (cut[r].max() + 1) // 2 for r in rows]
        peak = int(min(b, len(cut)) * cut.max())
    trained_share = kept.sum() / max(cut.sum(), 1)
    return BatchTokens(
        positions=float(np.mean(positions)),
        attention_pairs=float(np.mean(pairs)),
        trained=float(np.mean([kept[r].sum() for r in rows])),
        peak_positions=peak,
        peak_trained=int(math.ceil(peak * trained_share)),
        from_data=True,
    )


def cutoff_batch_tokens(config: TrainConfig) -> BatchTokens:
    """Without data: every example exactly cutoff_len long, half of it trained (an upper bound on length)."""
    b, n = config.per_device_train_batch_size, config.cutoff_len
    return BatchTokens(
        positions=float(b * n),
        attention_pairs=float(b * n * (n + 1) // 2),
        trained=b * n * ASSUMED_TRAINED_SHARE,
        peak_positions=b * n,
        peak_trained=int(b * n * ASSUMED_TRAINED_SHARE),
        from_data=False,
    )


def sample_lengths(conversations: list, encoder, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, trained tokens) of up to SAMPLE_CONVERSATIONS conversations, rendered and tokenized
    by `encoder` (a core.template.ChatEncoder) as the trainer does."""
    picked = conversations
    if len(conversations) > SAMPLE_CONVERSATIONS:
        picked = random.Random(seed).sample(conversations, SAMPLE_CONVERSATIONS)
    encoded = encoder.encode(picked)
    return (
        np.array([len(e.input_ids) for e in encoded], np.int64),
        np.array([int(e.trained.sum()) for e in encoded], np.int64),
    )


# ------------------------------------------------------------------------------------ the memory
@dataclass(frozen=True)
class Memory:
    """Peak bytes of a training process, by what holds them. `loading`: the checkpoint read in
    while the weights are converted to a narrower dtype (cpu_bf16 from a float32 checkpoint), held
    only until training starts; the peak is that or training's, whichever is higher."""

    weights: int
    lora: int
    activations: int
    logits: int
    runtime: int
    loading: int = 0

    @property
    def loading_decides(self) -> bool:
        """Whether loading, not training, sets the peak."""
        return self.loading > self.lora + self.activations + self.logits

    @property
    def total(self) -> int:
        return self.weights + max(self.loading, self.lora + self.activations + self.logits) + self.runtime


def weight_bytes(device: str, config: TrainConfig) -> int:
    """Bytes of an unquantized base weight: 16-bit on GPUs (core.models.compute_dtype) and under
    cpu_bf16 where it applies, float32 on the CPU otherwise."""
    if device != "cpu":
        return 2
    if config.cpu_bf16:
        from core.models import cpu_bf16_applies

        return 2 if cpu_bf16_applies(device, config.cpu_bf16, config.quantization_bit) else FP32_BYTES
    return FP32_BYTES


def activation_bytes(device: str) -> int:
    """Bytes of a kept activation: 16-bit on GPUs; float32 on the CPU, also under cpu_bf16, which
    keeps the residual stream, attention and the LoRA inputs in float32 (core.lora_addmm)."""
    return 2 if device != "cpu" else FP32_BYTES


def sharing_processes(config: TrainConfig, device: str) -> int:
    """Training processes that share this memory and these cores: on the CPU all num_processes
    (each holds its own model and batches); on GPUs each process has a device of its own."""
    return config.num_processes if device == "cpu" else 1


def memory_bytes(shape: ModelShape, config: TrainConfig, tokens: BatchTokens, device: str) -> Memory:
    act = activation_bytes(device)
    loading = 0
    if config.quantization_bit == "none":
        params, stored = shape.linear_params + shape.other_params, weight_bytes(device, config)
        weights = params * stored
        if device == "cpu" and stored < shape.checkpoint_bytes:  # the files are read whole, then converted
            loading = params * shape.checkpoint_bytes
    else:
        weights = (
            int(shape.linear_params * QUANT_WEIGHT_BYTES[config.quantization_bit]) + shape.other_params * FP32_BYTES
        )
    h, i, kv = shape.hidden_size, shape.intermediate_size, shape.num_kv_heads * shape.head_dim
    from core.lora_dropout import DROPPED_COPY_MAX_ELEMENTS  # here: it imports torch (see CHUNK_POSITIONS)

    positions = tokens.peak_positions
    fused_dropout = config.fused_lora_dropout and device == "cpu" and config.lora_dropout > 0
    rebuilt_hidden = fused_dropout and positions * h > DROPPED_COPY_MAX_ELEMENTS
    rebuilt_intermediate = fused_dropout and positions * i > DROPPED_COPY_MAX_ELEMENTS
    hidden = SAVED_HIDDEN_PER_LAYER - (RECOMPUTED_NORM_OUTPUTS if rebuilt_hidden else 0)
    intermediate = SAVED_INTERMEDIATE_PER_LAYER
    if config.fused_swiglu:
        intermediate -= FUSED_SWIGLU_UNSAVED + (RECOMPUTED_DOWN_INPUT if rebuilt_intermediate else 0)
    layer = hidden * h + SAVED_KV_PER_LAYER * kv + intermediate * i  # elements
    layer_bytes = layer * act
    if config.lora_dropout > 0:
        dropped = (SHARED_DROPOUT_HIDDEN if config.shared_lora_input else DROPOUT_HIDDEN) * h + DROPOUT_INTERMEDIATE * i
        layer_bytes += dropped * (1 if fused_dropout else act)
    if config.gradient_checkpointing:  # every layer's input, plus the one layer being recomputed
        saved = positions * (shape.num_layers * h * act + layer_bytes)
    else:
        saved = positions * shape.num_layers * layer_bytes
    activations = saved + positions * (BACKWARD_HIDDEN * h + BACKWARD_INTERMEDIATE * i) * act
    if config.trained_tokens_loss:
        from core.head_loss import CHUNK_POSITIONS  # here: that module imports torch, core.runs imports this one

        chunk = min(tokens.peak_trained, CHUNK_POSITIONS)
        logits = chunk * shape.vocab_size * FP32_BYTES * CHUNK_LOGITS_COPIES + tokens.peak_trained * h * act
    else:
        logits = positions * shape.vocab_size * FP32_BYTES * FULL_LOGITS_COPIES
    return Memory(
        weights=int(weights),
        lora=lora_params(shape, config) * LORA_BYTES_PER_PARAM,
        activations=int(activations),
        logits=int(logits),
        runtime=RUNTIME_BYTES.get(device, RUNTIME_BYTES["cpu"]),
        loading=loading,
    )


def available_bytes(device: str) -> int:
    """Memory a new training process may use: free VRAM on a GPU, available RAM otherwise."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


# -------------------------------------------------------------------------------------- the time
def attention_flops_per_pair(shape: ModelShape) -> int:
    """One forward of causal attention, all layers, per (query, key) pair: QK^T and AV, a multiply-add
    per head dimension each."""
    return 4 * shape.num_heads * shape.head_dim * shape.num_layers


def recompute_flops(shape: ModelShape, config: TrainConfig, tokens: BatchTokens) -> float:
    """Gradient checkpointing's extra work in one mean micro-batch: every layer's forward run again
    in backward (projections, LoRA, attention); 0 without checkpointing."""
    if not config.gradient_checkpointing:
        return 0.0
    linear = tokens.positions * 2 * (shape.linear_params + lora_params(shape, config))
    return float(linear + tokens.attention_pairs * attention_flops_per_pair(shape))


def micro_batch_flops(shape: ModelShape, config: TrainConfig, tokens: BatchTokens) -> float:
    """Floating-point operations of one mean micro-batch, forward and backward, plus recompute_flops.

    A frozen projection's backward computes only its input's gradient: as much as its forward, so
    forward + backward is two passes. Causal attention's backward is twice its forward. The output
    layer: the projected positions forward, and the gradient product.
    """
    lora_flops = 2 * lora_params(shape, config) * 3  # forward, input and weight gradients of A and B
    linear = tokens.positions * (2 * shape.linear_params * 2 + lora_flops)
    attention = tokens.attention_pairs * attention_flops_per_pair(shape) * 3
    projected = tokens.trained if config.trained_tokens_loss else tokens.positions
    head = projected * 2 * shape.vocab_size * shape.hidden_size * 2
    return float(linear + attention + head) + recompute_flops(shape, config, tokens)


@dataclass(frozen=True)
class CostModel:
    """seconds a micro-batch = overhead_s + (flops - recompute) / flops_per_s + recompute /
    recompute_flops_per_s, where recompute is gradient checkpointing's share of the flops.

    `recompute_flops_per_s` is measured apart: checkpointing costs more time than its flops at the
    rest's speed (its element-wise ops run again too, and the trainer's checkpointing hooks; see
    bench/README.md); None where it was not measured: as fast as the rest. `source` says where the model comes from: 'calibrated'
    (measured for these settings on this machine), 'scaled' (this machine's speed measured for
    other settings) or 'rough' (no measurement on this machine)."""

    overhead_s: float
    flops_per_s: float
    source: str
    recompute_flops_per_s: float | None = None

    def micro_batch_s(self, flops: float, recompute: float) -> float:
        recompute_speed = self.recompute_flops_per_s or self.flops_per_s
        return self.overhead_s + (flops - recompute) / self.flops_per_s + recompute / recompute_speed


def rough_cost(device: str) -> CostModel:
    return CostModel(
        ROUGH_OVERHEAD_S.get(device, 0.05), ROUGH_FLOPS_PER_S.get(device, ROUGH_FLOPS_PER_S["cpu"]), "rough"
    )


# ---------------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class Fix:
    """A change to the config (field -> value) and the peak it leads to."""

    change: dict[str, Any]
    peak_bytes: int
    fits: bool


@dataclass(frozen=True)
class Estimate:
    device: str
    memory: Memory
    available_bytes: int
    step_s: float
    total_steps: int | None
    cost_source: str
    tokens: BatchTokens
    processes: int = 1  # training processes holding a `memory` each in the same memory
    fixes: list[Fix] = field(default_factory=list)  # only when it does not fit

    @property
    def peak_bytes(self) -> int:
        return self.memory.total * self.processes

    @property
    def total_s(self) -> float | None:
        return None if self.total_steps is None else self.step_s * self.total_steps

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.available_bytes

    @property
    def tight(self) -> bool:
        return self.fits and self.peak_bytes > TIGHT_SHARE * self.available_bytes


def _shrunk(config: TrainConfig, device: str) -> list[dict[str, Any]]:
    """Changes that lower the peak, one at a time, in the order people try them."""
    changes: list[dict[str, Any]] = []
    if sharing_processes(config, device) > 1:
        changes.append({"num_processes": 1})
    batch = config.per_device_train_batch_size
    if batch > 1:  # the same effective batch, fewer positions at once
        changes.append(
            {
                "per_device_train_batch_size": max(batch // 2, 1),
                "gradient_accumulation_steps": config.gradient_accumulation_steps * (batch // max(batch // 2, 1)),
            }
        )
    if not config.gradient_checkpointing:
        changes.append({"gradient_checkpointing": True})
    if not config.trained_tokens_loss:
        changes.append({"trained_tokens_loss": True})
    if config.cutoff_len > 128:
        changes.append({"cutoff_len": max(64, config.cutoff_len // 2 // 64 * 64)})
    if config.quantization_bit != "4":
        changes.append({"quantization_bit": "4"})
    return changes


def _tokens_for(config: TrainConfig, lengths: tuple[np.ndarray, np.ndarray] | None) -> BatchTokens:
    return batch_tokens(*lengths, config) if lengths is not None and len(lengths[0]) else cutoff_batch_tokens(config)


def _peak_bytes(
    shape: ModelShape, config: TrainConfig, lengths: tuple[np.ndarray, np.ndarray] | None, device: str
) -> int:
    return memory_bytes(shape, config, _tokens_for(config, lengths), device).total * sharing_processes(config, device)


def fixes_for(
    shape: ModelShape, config: TrainConfig, lengths: tuple[np.ndarray, np.ndarray] | None, device: str, available: int
) -> list[Fix]:
    """Each single change that lowers the peak, then all of them together if none fits alone."""
    fixes = []
    for change in _shrunk(config, device):
        peak = _peak_bytes(shape, replace(config, **change), lengths, device)
        fixes.append(Fix(change, peak, peak <= available))
    if fixes and not any(f.fits for f in fixes):
        combined: dict[str, Any] = {}
        for change in _shrunk(config, device):
            combined.update(change)
        peak = _peak_bytes(shape, replace(config, **combined), lengths, device)
        fixes.append(Fix(combined, peak, peak <= available))
    return fixes


def estimate(
    config: TrainConfig,
    shape: ModelShape,
    lengths: tuple[np.ndarray, np.ndarray] | None,
    total_steps: int | None,
    device: str,
    available: int,
    cost: CostModel,
) -> Estimate:
    """The estimate of `config` on `shape`: `lengths` (tokens, trained tokens) of a sample of its
    examples, or None (every example at cutoff_len); `total_steps` from the plan
    (core.advisor.training_plan); `available` bytes of memory; `cost` this machine's cost model."""
    tokens = _tokens_for(config, lengths)
    processes = sharing_processes(config, device)
    micro_batch_s = cost.micro_batch_s(micro_batch_flops(shape, config, tokens), recompute_flops(shape, config, tokens))
    est = Estimate(
        device=device,
        memory=memory_bytes(shape, config, tokens, device),
        available_bytes=available,
        # processes sharing the CPU's cores run their micro-batches at the machine's one speed
        step_s=micro_batch_s * config.gradient_accumulation_steps * processes,
        total_steps=total_steps,
        cost_source=cost.source,
        tokens=tokens,
        processes=processes,
    )
    return est if est.fits else replace(est, fixes=fixes_for(shape, config, lengths, device, available))


# ----------------------------------------------------------------------------------------- ETA
def eta_s(events: list[dict[str, Any]]) -> float | None:
    """Seconds left for the newest attempt, from its own step events: the time per step of its
    newest ETA_WINDOW_STEPS steps (all of them early on) times the steps left; None before a step
    of this attempt is timed."""
    start = last_event(events, "start")
    begin = events.index(start) + 1 if start is not None else 0
    steps = [e for e in events[begin:] if e["type"] == "step" and "elapsed_s" in e]
    if not steps:
        return None
    last = steps[-1]
    total = last.get("total_steps") or (start or {}).get("total_steps") or last["step"]
    base = next((e for e in steps if e["step"] >= last["step"] - ETA_WINDOW_STEPS), steps[0])
    if base is last or len(steps) <= ETA_WINDOW_STEPS // 4:  # too few: from the attempt's start
        done, seconds = last["step"] - (start or {}).get("resumed_from_step", 0), last["elapsed_s"]
    else:
        done, seconds = last["step"] - base["step"], last["elapsed_s"] - base["elapsed_s"]
    if done <= 0:
        return None
    return seconds / done * max(total - last["step"], 0)


# ------------------------------------------------------------------------------ for a form/config
_LENGTHS: dict[tuple, tuple[list, tuple[np.ndarray, np.ndarray]]] = {}  # key -> (conversations kept alive, lengths)
_LENGTHS_KEPT = 8


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from core.models import ModelSource, load_tokenizer

    return load_tokenizer(ModelSource(path))


def dataset_lengths(conversations: list, model_folder: str, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """sample_lengths of `conversations` with the model's tokenizer and config's prompt options,
    kept for the same list object (the page's dataset cache hands the same one until the file changes)."""
    from core.template import ChatEncoder

    key = (id(conversations), len(conversations), model_folder, config.system_prompt, config.train_on_prompt)
    if key not in _LENGTHS:
        encoder = ChatEncoder(_tokenizer(model_folder), config.system_prompt, config.train_on_prompt)
        if len(_LENGTHS) >= _LENGTHS_KEPT:
            _LENGTHS.pop(next(iter(_LENGTHS)))
        _LENGTHS[key] = (conversations, sample_lengths(conversations, encoder))
    return _LENGTHS[key][1]


def preflight(config: TrainConfig, conversations: list | None) -> Estimate:
    """The estimate of a run of `config` on `conversations` (None: no dataset yet) on this machine:
    the steps from the plan (core.advisor.training_plan), the cost from core.calibration."""
    from core.advisor import training_plan
    from core.calibration import cost_for
    from core.data import train_count
    from core.models import best_device, resolve_model

    source = resolve_model(config.model_name_or_path)
    shape = model_shape(source.path)
    lengths, total = None, config.max_steps if config.max_steps > 0 else None
    if conversations:
        lengths = dataset_lengths(conversations, source.path, config)
        total = training_plan(config, train_count(len(conversations), config.val_size))["total_steps"]
    device = best_device()
    return estimate(
        config, shape, lengths, total, device, available_bytes(device), cost_for(config, source.path, device)
    )
