"""The output layer and the cross-entropy of the trained positions, a chunk of positions at a time.

The plain loss holds [positions, vocab] float32 logits, their log-softmax and, in backward, their
gradient at once: on the default model (49,152 words) 197 KB per position and copy, so ~1.5 GB for
the 2,000 trained positions of two long chats. The output layer is frozen under LoRA, so the only
gradient it passes on is the one to the hidden states, d loss / d h = (softmax - onehot) @ W. This
computes it in the forward pass, chunk by chunk, and keeps only that [positions, hidden] gradient
(2.3 KB per position on the default model) for backward: the same value and gradients, no logits
kept, no extra matrix product (the backward product is done in the forward pass instead).
"""

from __future__ import annotations

import torch

CHUNK_POSITIONS = 1024  # [1024, 49k] float32 logits: 200 MB live at a time on the default model
# CausalLM classes whose logits are exactly lm_head(last hidden state): no soft-capping or scaling of
# the logits (Gemma's final_logit_softcapping, Granite's logits_scaling, Cohere's logit_scale ...).
PLAIN_HEAD_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "phi3", "olmo2"})


class _HeadCrossEntropySum(torch.autograd.Function):
    """sum_i CE(hidden_i @ weight.T, target_i) for hidden [n, d], frozen weight [vocab, d], targets [n]."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            logits = (hidden[rows] @ weight.T).float()  # upcast, as transformers' ForCausalLMLoss does
            target = targets[rows, None]
            log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
            total += (log_norm - logits.gather(1, target)).sum()
            if grad_hidden is not None:
                probs = logits.sub_(log_norm).exp_()  # softmax, in place of the logits
                probs.scatter_add_(1, target, torch.full_like(target, -1, dtype=probs.dtype))
                grad_hidden[rows] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad_hidden)
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        (grad_hidden,) = ctx.saved_tensors
        return grad_hidden * grad_total.to(grad_hidden.dtype), None, None, None


def head_cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """Summed next-token cross-entropy (float32 scalar) of `hidden` [n, d] through the frozen output
    layer `weight` [vocab, d] against `targets` [n], with gradients for `hidden` only; `chunk`
    positions at a time (default CHUNK_POSITIONS)."""
    return _HeadCrossEntropySum.apply(hidden, weight, targets, chunk or CHUNK_POSITIONS)


def plain_frozen_head(model) -> tuple[torch.nn.Module, torch.Tensor] | None:
    """(decoder, output weight) when a causal LM's logits are lm_head(decoder(...).last_hidden_state)
    with a frozen, bias-free nn.Linear head; None otherwise (then the caller lets the model project)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    plain = (
        base.config.model_type in PLAIN_HEAD_MODEL_TYPES
        and type(head) is torch.nn.Linear
        and head.bias is None
        and not head.weight.requires_grad
    )
    return (base.get_decoder(), head.weight) if plain else None
