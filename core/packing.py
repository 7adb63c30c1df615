"""Training throughput: padding-free packed batches, per-example causal attention, and a loss computed
only where tokens are trained (bench/throughput.py measures them against the plain pipeline).

The pieces core.train composes; each keeps the maths of the plain padded pipeline (tests/test_packing.py):

  PackingCollator      a micro-batch's examples concatenated into ONE row, no padding: input_ids,
                       labels and position_ids that restart at 0 for every example. The first label
                       of each example is IGNORE_INDEX, so the last token of example A never learns
                       to predict the first token of example B (unpacked, nothing predicts it either).
  packed_attention     attention that runs sdpa causally on each example of a packed row separately.
                       transformers 5 would also handle the row (masking_utils detects restarting
                       position_ids when attention_mask is None and builds a block-diagonal mask),
                       but sdpa then computes the full (sum of lengths)^2 scores and masks most of
                       them; per-example causal sdpa computes only the sum of length^2 / 2 scores
                       (about twice as fast on long rows, the same on short ones: bench/README.md).
  TrainedTokensTrainer a Trainer whose loss projects onto the vocabulary (lm_head, 49k columns on
                       the default model) only the positions whose next token is trained, instead
                       of every position (a chunk at a time, core.head_loss); value and gradients
                       equal the standard causal-LM loss, with the same gradient-accumulation
                       normalisation (num_items_in_batch).
core.train also fuses the CPU's LoRA dropout into lora_A (core.lora_dropout).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from core.head_loss import head_cross_entropy_sum, plain_frozen_head
from core.template import IGNORE_INDEX

PACKED_ATTENTION = "lora_tailor_packed_sdpa"  # the name registered with transformers' attention interfaces


# ------------------------------------------------------------------------------------- batches
class PackingCollator:
    """Features (input_ids, labels lists as made by core.engine.as_features) -> one packed row.

    Returns input_ids, labels and position_ids, each int64 [1, total tokens], and no attention_mask:
    every token of the row is real, and a 2-D attention_mask would stop transformers from reading
    the example boundaries from position_ids.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for feature in features:
            ids, example_labels = list(feature["input_ids"]), list(feature["labels"])
            input_ids += ids
            labels += [IGNORE_INDEX] + example_labels[1:]
            position_ids += range(len(ids))
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([position_ids], dtype=torch.long),
        }


def example_lengths(position_ids: torch.Tensor) -> list[int]:
    """[1, tokens] restarting positions -> the length of each example packed in the row.

    An example starts wherever the position does not continue the previous one (the same rule as
    transformers.masking_utils.find_packed_sequence_indices).
    """
    positions = position_ids[0]
    starts = torch.nonzero(positions[1:] != positions[:-1] + 1).flatten() + 1
    bounds = [0, *starts.tolist(), positions.shape[0]]
    return [end - start for start, end in zip(bounds[:-1], bounds[1:])]


# ----------------------------------------------------------------------------------- attention
def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """sdpa, run causally per example when the batch is one packed row.

    query [1, heads, tokens, head_dim], key/value [1, kv_heads, tokens, head_dim]; returns
    ([1, tokens, heads, head_dim], None) like transformers' sdpa_attention_forward, which does
    the work here. Anything but a plain causal packed row (generation with a KV cache, whose
    left-padded positions also restart; a batch of padded rows; sliding-window or soft-capped
    layers) goes to sdpa unchanged, with transformers' own mask. Trainer runs with use_cache=False.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (
        position_ids is None
        or query.shape[0] != 1
        or key.shape[2] != query.shape[2]
        or kwargs.get("use_cache")
        or kwargs.get("sliding_window") is not None
        or kwargs.get("softcap") is not None
        or not getattr(module, "is_causal", True)
        or kwargs.get("is_causal") is False
    )
    lengths = [] if plain else example_lengths(position_ids)
    # Under CPU autocast (cpu_bf16) sdpa would run in bf16, whose CPU backward is several times
    # slower than float32's at these sizes (bench/README.md): it runs in float32 (q, k and v come
    # float32 from the LoRA layers, or bf16 from a projection without LoRA).
    if query.is_cpu and torch.is_autocast_enabled("cpu"):
        query, key, value = query.float(), key.float(), value.float()
    with torch.autocast("cpu", enabled=False):
        if len(lengths) <= 1:  # one example (or not packed): the mask is None and sdpa runs causally anyway
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        kwargs.pop("is_causal", None)
        # split (not slicing in a loop): its backward is one concatenation, not a zero-filled copy per piece
        pieces = [
            sdpa_attention_forward(module, q, k, v, None, is_causal=True, **kwargs)[0]
            for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))
        ]
    return torch.cat(pieces, dim=1), None


def use_packed_attention(model) -> bool:
    """Switch a model (or a peft-wrapped one) from sdpa to packed_attention; False if it is not on sdpa.

    The mask function registered with it is sdpa's, so the fallback paths get exactly the mask sdpa
    would; on packed rows that block-diagonal mask is built (bool [tokens, tokens]) but not used.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if base.config._attn_implementation != "sdpa":
        return False
    base.set_attn_implementation(PACKED_ATTENTION)
    return base.config._attn_implementation == PACKED_ATTENTION


# ---------------------------------------------------------------------------------------- loss
def trained_tokens_loss(
    model,
    inputs: dict[str, torch.Tensor],
    num_items_in_batch: torch.Tensor | int | None = None,
    direct_head: bool = True,
):
    """Causal-LM cross-entropy computed only at the positions whose next token is trained.

    Position t predicts token t+1, so position t is kept when labels[t+1] is trained. Only the kept
    final hidden states go through the output layer: with a plain frozen head (core.head_loss) the
    decoder's hidden states are gathered and projected a chunk at a time, no logits kept; otherwise
    the model gathers them itself (`logits_to_keep` as a bool [rows, tokens] mask, transformers 5)
    and returns logits [kept, vocab] instead of [rows, tokens, vocab].
    The sum of token losses is divided by num_items_in_batch (the trained tokens of the whole
    gradient-accumulation window, counted by Trainer) when given, else by this batch's count: the
    same normalisation as transformers' ForCausalLMLoss. `direct_head` False: the model's own
    forward is always used (a DDP / FSDP / DeepSpeed wrapper syncs or gathers weights there, so its
    decoder must not be called around it). Returns (loss, model outputs).
    """
    labels = inputs["labels"]  # [rows, tokens]
    targets = labels[:, 1:]  # [rows, tokens - 1]: the token each position predicts
    keep = torch.nn.functional.pad(targets != IGNORE_INDEX, (0, 1), value=False)  # [rows, tokens]
    kept_targets = targets[keep[:, :-1]]  # [kept]
    model_inputs = {name: value for name, value in inputs.items() if name != "labels"}
    head = plain_frozen_head(model) if direct_head else None
    if head is not None:
        decoder, weight = head
        outputs = decoder(**model_inputs)
        loss = head_cross_entropy_sum(outputs.last_hidden_state[keep], weight, kept_targets)
    else:
        outputs = model(**model_inputs, logits_to_keep=keep)
        logits = outputs.logits  # [kept, vocab]
        if logits.dim() == 3:  # a model class that ignores a mask in logits_to_keep: same loss, all logits
            logits = logits[keep]
        logits = logits.float()  # upcast like ForCausalLMLoss
        loss = torch.nn.functional.cross_entropy(logits, kept_targets, reduction="sum")
    if num_items_in_batch is None:
        return loss / keep.sum().clamp(min=1), outputs
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch, outputs


class TrainedTokensTrainer(Trainer):
    """Trainer with trained_tokens_loss; everything else (loop, accumulation, logging) is Trainer's.

    The loss is normalised by num_items_in_batch exactly when Trainer passes it (a model that
    accepts loss kwargs), which is when Trainer's default rule treats it as already scaled for
    gradient accumulation; otherwise it is a per-batch mean and Trainer divides it by the number of
    accumulation steps, as for the standard loss. Several processes: Trainer counts num_items_in_batch
    over all of them (average_tokens_across_devices) and DDP averages their gradients, so each
    process's loss is scaled by the number of processes, as Trainer.compute_loss does.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # several processes: Trainer hands the wrapper (DDP) and keeps the model as self.model.
        # (accelerate's unwrap_model would walk every module each step to tell.)
        wrapped = model is not self.model
        # the direct head calls the decoder, not the model's forward that accelerate wraps in autocast
        with self.accelerator.autocast():
            loss, outputs = trained_tokens_loss(model, inputs, num_items_in_batch, direct_head=not wrapped)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss
