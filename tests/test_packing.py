"""Packing and the trained-positions loss change the speed, not the maths (tiny model, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import TrainConfig
from core.engine import as_features, build_model, padding_collator
from core.head_loss import plain_frozen_head
from core.packing import (
    PACKED_ATTENTION,
    PackingCollator,
    TrainedTokensTrainer,
    example_lengths,
    trained_tokens_loss,
    use_packed_attention,
)
from core.template import IGNORE_INDEX, Encoded

TOL = 1e-4


def _examples(vocab: int, lengths=(7, 12, 5, 9), seed=0) -> list[Encoded]:
    """Random token ids; the second half of each example is trained (like a reply after a prompt)."""
    rng = np.random.default_rng(seed)
    out = []
    for length in lengths:
        ids = rng.integers(4, vocab, size=length)
        trained = np.zeros(length, dtype=bool)
        trained[length // 2 :] = True
        out.append(Encoded(ids.astype(np.int64), trained))
    return out


@pytest.fixture()
def lora_model(tiny_model_dir, tmp_path):
    """The tiny model with LoRA as core.train builds it; lora_B randomised so every LoRA weight gets a gradient."""
    config = TrainConfig(
        model_name_or_path=str(tiny_model_dir), lora_dropout=0.0, output_dir=str(tmp_path / "run"), cpu_bf16=False
    )  # float32: exact comparisons (bf16: tests/test_cpu_bf16.py)
    model, tokenizer = build_model(config, "cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    model.eval()  # no dropout: the two paths must see the same function
    model.config.use_cache = False  # as under Trainer: no KV cache in a training forward
    return model, tokenizer


def _token_losses(model, batch) -> torch.Tensor:
    """Per-position next-token losses [rows, tokens - 1] (0 where the next label is not trained)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits.float()
    targets = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), targets, reduction="none", ignore_index=IGNORE_INDEX
    )
    return losses


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_collator_packs_one_row_with_restarting_positions():
    examples = [
        Encoded(np.array([5, 6, 7]), np.array([False, True, True])),
        Encoded(np.array([8, 9]), np.array([True, True])),
    ]
    batch = PackingCollator()(as_features(examples))
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # Example 2's first token is never a target: unpacked, no position predicts it either.
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]]
    assert "attention_mask" not in batch  # would hide the boundaries from transformers' masking
    assert example_lengths(batch["position_ids"]) == [3, 2]


def test_example_lengths_handles_length_one_examples():
    assert example_lengths(torch.tensor([[0, 0, 1, 0, 0, 1, 2]])) == [1, 2, 1, 3]
    assert example_lengths(torch.tensor([[0, 1, 2, 3]])) == [4]


@pytest.mark.parametrize("packed_attention", [False, True], ids=["transformers-mask", "per-example-sdpa"])
def test_packed_loss_per_example_equals_unpacked(lora_model, packed_attention):
    model, tokenizer = lora_model
    if packed_attention:
        assert use_packed_attention(model)
        assert model.get_base_model().config._attn_implementation == PACKED_ATTENTION
    examples = _examples(model.config.vocab_size)
    packed = _token_losses(model, PackingCollator()(as_features(examples)))[0]
    bounds = np.cumsum([0] + [len(e.input_ids) for e in examples])
    for index, example in enumerate(examples):
        alone = _token_losses(model, padding_collator(tokenizer)(as_features([example])))[0]
        # Packed position t of example i predicts its token t+1; the boundary position (last token
        # of example i predicting the first of i+1) is IGNORE_INDEX and contributes 0.
        mine = packed[bounds[index] : bounds[index + 1] - 1]
        assert torch.allclose(mine, alone, atol=TOL), (index, mine, alone)
    padded = _token_losses(model, padding_collator(tokenizer)(as_features(examples)))
    assert torch.allclose(packed.sum(), padded.sum(), atol=TOL)


@pytest.mark.parametrize("packed_attention", [False, True], ids=["transformers-mask", "per-example-sdpa"])
def test_packed_examples_do_not_attend_to_each_other(lora_model, packed_attention):
    model, _ = lora_model
    if packed_attention:
        use_packed_attention(model)
    a, b, c = _examples(model.config.vocab_size, lengths=(8, 10, 6))
    changed_a = Encoded(a.input_ids[::-1].copy(), a.trained)

    def logits(examples):
        batch = PackingCollator()(as_features(examples))
        return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits

    with torch.no_grad():
        before, after = logits([a, b, c]), logits([changed_a, b, c])
    assert not torch.allclose(before[0, :8], after[0, :8], atol=TOL)  # A itself did change
    assert torch.allclose(before[0, 8:], after[0, 8:], atol=1e-5)  # B and C did not


@pytest.mark.parametrize("head", ["chunked", "model"])
def test_trained_tokens_loss_equals_full_logits_loss_with_accumulation(lora_model, head, monkeypatch):
    """Two accumulated micro-batches: the trained-positions loss, normalised by num_items_in_batch as
    Trainer does, has the value and the gradients of the model's own (full logits) causal-LM loss;
    with the chunked head loss (several chunks per batch) and with the model projecting the kept
    positions itself (the path for models outside core.head_loss's list)."""
    model, tokenizer = lora_model
    if head == "chunked":
        monkeypatch.setattr("core.head_loss.CHUNK_POSITIONS", 4)
        assert plain_frozen_head(model) is not None
    else:
        monkeypatch.setattr("core.head_loss.PLAIN_HEAD_MODEL_TYPES", frozenset())
    examples = _examples(model.config.vocab_size, lengths=(7, 12, 5, 9, 11, 4))
    for collate in (PackingCollator(), padding_collator(tokenizer)):
        micro = [collate(as_features(examples[:2])), collate(as_features(examples[2:]))]
        num_items = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro)  # Trainer's count

        model.zero_grad()
        reference = 0.0
        for batch in micro:
            loss = model(**batch, num_items_in_batch=torch.tensor(num_items)).loss  # ForCausalLMLoss, sum / N
            loss.backward()
            reference += loss.item()
        expected = _grads(model)

        model.zero_grad()
        ours = 0.0
        for batch in micro:
            loss, outputs = trained_tokens_loss(model, batch, torch.tensor(num_items))
            if head == "model":  # only trained positions projected
                assert outputs.logits.shape[0] < batch["input_ids"].numel()
            loss.backward()
            ours += loss.item()
        got = _grads(model)

        assert abs(ours - reference) < TOL
        for name, grad in expected.items():
            assert torch.allclose(got[name], grad, atol=TOL), name
        assert any(g.abs().sum() > 0 for g in got.values())

        # Without num_items_in_batch (eval), a per-batch mean like the standard loss.
        batch = micro[0]
        with torch.no_grad():
            assert abs(trained_tokens_loss(model, batch)[0].item() - model(**batch).loss.item()) < TOL


def test_trainer_steps_match_standard_trainer(lora_model, tmp_path):
    """A real Trainer run: TrainedTokensTrainer + packing logs the same losses as Trainer + padding."""
    from transformers import Trainer, TrainingArguments

    model, tokenizer = lora_model
    model.train()
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    features = as_features(_examples(model.config.vocab_size, lengths=(7, 12, 5, 9, 11, 4, 8, 6)))

    def run(trainer_class, collator, packed_attention):
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in start:
                    param.copy_(start[name])
        base = model.get_base_model()
        base.set_attn_implementation(PACKED_ATTENTION if packed_attention else "sdpa")
        args = TrainingArguments(
            output_dir=str(tmp_path / "out"),
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            max_steps=2,
            learning_rate=1e-2,
            lr_scheduler_type="constant",
            logging_steps=1,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            remove_unused_columns=False,
            disable_tqdm=True,
            seed=0,
            include_num_input_tokens_seen="all" if packed_attention else "non_padding",
        )
        trainer = trainer_class(model=model, args=args, train_dataset=features, data_collator=collator)
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        return losses, trainer.state.num_input_tokens_seen

    use_packed_attention(model)
    standard, standard_tokens = run(Trainer, padding_collator(tokenizer), packed_attention=False)
    ours, our_tokens = run(TrainedTokensTrainer, PackingCollator(), packed_attention=True)
    assert len(standard) == len(ours) == 2
    assert np.allclose(ours, standard, atol=TOL), (ours, standard)
    assert our_tokens == standard_tokens == sum(len(f["input_ids"]) for f in features)


def test_engine_runs_the_same_with_and_without_packing(tmp_path, tiny_model_dir):
    """core.engine.run_training, the real entry point: same losses, and Trainer's token count (what
    events.jsonl's tokens_per_s divides) is the real-token count either way."""
    from transformers import TrainerCallback

    from core.engine import encode_dataset, run_training
    from core.events import RunFolder
    from core.models import ModelSource, load_tokenizer
    from tests.conftest import qa_records, write_jsonl

    dataset = write_jsonl(tmp_path / "qa.jsonl", qa_records(12))
    losses, tokens_seen = {}, {}

    class TokensSeen(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            tokens_seen[packing] = state.num_input_tokens_seen

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's matmuls are too small to share between threads
    try:
        for packing in (False, True):
            config = TrainConfig(
                model_name_or_path=str(tiny_model_dir),
                dataset=str(dataset),
                packing=packing,
                lora_dropout=0.0,
                max_steps=3,
                per_device_train_batch_size=2,
                gradient_accumulation_steps=2,
                learning_rate=1e-2,
                warmup_ratio=0.0,
                save_steps=100,
                output_dir=str(tmp_path / f"run-{packing}"),
            )
            run_training(config, callbacks=(TokensSeen(),))
            losses[packing] = [e["loss"] for e in RunFolder(config.output_dir).all_events() if e["type"] == "step"]
    finally:
        torch.set_num_threads(threads)
    assert len(losses[True]) == 3
    assert np.allclose(losses[True], losses[False], atol=TOL), losses
    # 3 steps x 4 examples = the 12 examples once: every real token, no padding counted.
    examples, _ = encode_dataset(
        TrainConfig(model_name_or_path=str(tiny_model_dir), dataset=str(dataset)),
        load_tokenizer(ModelSource(str(tiny_model_dir))),
    )
    assert tokens_seen[True] == tokens_seen[False] == sum(len(e.input_ids) for e in examples)


def test_trained_tokens_loss_equals_full_logits_loss_under_qlora(tiny_model_dir, tmp_path):
    """4-bit base (bitsandbytes on the CPU) + LoRA: same loss and LoRA gradients as the model's own loss."""
    config = TrainConfig(
        model_name_or_path=str(tiny_model_dir), quantization_bit="4", lora_dropout=0.0, output_dir=str(tmp_path / "r")
    )
    model, _ = build_model(config, "cpu")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    model.train()  # no dropout (lora_dropout 0); bitsandbytes' CPU eval path repacks weights tiny layers lack
    model.config.use_cache = False
    use_packed_attention(model)
    batch = PackingCollator()(as_features(_examples(model.config.vocab_size)))
    num_items = torch.tensor(int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()))

    model.zero_grad()
    reference = model(**batch, num_items_in_batch=num_items).loss
    reference.backward()
    expected = _grads(model)
    model.zero_grad()
    ours = trained_tokens_loss(model, batch, num_items)[0]
    ours.backward()
    assert abs(ours.item() - reference.item()) < TOL
    for name, grad in _grads(model).items():
        assert torch.allclose(grad, expected[name], atol=TOL), name
