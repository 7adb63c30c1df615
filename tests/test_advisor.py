"""The advisor's rules, each checked on both sides of its threshold."""

import math

import pytest

from core import advisor
from core.advisor import advise, loss_notes, lr_scaling, summary_card, training_plan
from core.config import TrainConfig


def rules(notes):
    return {n.rule for n in notes}


def steps(losses, evals=()):
    events = [{"type": "step", "step": i + 1, "loss": v} for i, v in enumerate(losses)]
    return events + [{"type": "eval", "step": i + 1, "eval_loss": v} for i, v in enumerate(evals)]


def test_training_plan_matches_trainer_counting():
    config = TrainConfig(per_device_train_batch_size=2, gradient_accumulation_steps=4, num_train_epochs=3)
    # 10 examples -> 5 batches -> ceil(5 / 4) = 2 optimizer steps per epoch, as transformers counts.
    assert training_plan(config, 10) == {
        "effective_batch_size": 8,
        "steps_per_epoch": 2,
        "total_steps": 6,
        "num_train_epochs": 3,
        "learning_rate": config.learning_rate,
    }
    config.max_steps = 7
    assert training_plan(config, 10)["total_steps"] == 7


def test_lr_scaling_rules():
    scaled = lr_scaling(1e-4, 256, 45)
    assert scaled["linear"] == pytest.approx(1.7578e-5, rel=1e-3)  # DESIGN.md's example: ~1.75e-5
    assert scaled["sqrt"] == pytest.approx(1e-4 * math.sqrt(45 / 256))
    assert lr_scaling(3e-4, 16, 16) == {"linear": 3e-4, "sqrt": 3e-4}


def test_few_steps_threshold():
    config = TrainConfig(per_device_train_batch_size=1, gradient_accumulation_steps=1, num_train_epochs=1)
    assert "few_steps" in rules(advise(config, advisor.MIN_TOTAL_STEPS - 1))
    assert "few_steps" not in rules(advise(config, advisor.MIN_TOTAL_STEPS))


def test_epochs_threshold():
    assert "epochs" not in rules(advise(TrainConfig(num_train_epochs=advisor.MAX_EPOCHS)))
    assert "epochs" in rules(advise(TrainConfig(num_train_epochs=advisor.MAX_EPOCHS + 1)))
    # max_steps decides the length, not the epoch count
    assert "epochs" not in rules(advise(TrainConfig(num_train_epochs=50, max_steps=10)))


def test_warmup_threshold_and_recipe_exception():
    assert "warmup" not in rules(advise(TrainConfig(warmup_ratio=advisor.MAX_WARMUP_RATIO)))
    assert "warmup" in rules(advise(TrainConfig(warmup_ratio=0.3)))
    assert "warmup" not in rules(advise(TrainConfig(warmup_ratio=0.3, lr_scheduler_type="constant_with_warmup")))


def test_batch_large_for_small_data():
    big = TrainConfig(per_device_train_batch_size=4, gradient_accumulation_steps=5)  # 20 > 16
    ok = TrainConfig(per_device_train_batch_size=4, gradient_accumulation_steps=4)  # 16
    assert "batch_small_data" in rules(advise(big, advisor.SMALL_DATASET - 1))
    assert "batch_small_data" not in rules(advise(ok, advisor.SMALL_DATASET - 1))
    assert "batch_small_data" not in rules(advise(big, advisor.SMALL_DATASET))


def test_loraplus_notes():
    notes = advise(TrainConfig(loraplus_lr_ratio=16, learning_rate=2e-4))
    by_rule = {n.rule: n.message for n in notes}
    assert "lora_B at 0.0032" in by_rule["loraplus_lrs"]
    assert "loraplus_halve_lr" in by_rule and "0.0001" in by_rule["loraplus_halve_lr"]
    assert "loraplus_ratio" not in by_rule
    assert "loraplus_ratio" in rules(advise(TrainConfig(loraplus_lr_ratio=4)))
    assert "loraplus_halve_lr" not in rules(advise(TrainConfig(loraplus_lr_ratio=16, learning_rate=1e-4)))
    assert not {"loraplus_lrs", "loraplus_ratio"} & rules(advise(TrainConfig(loraplus_lr_ratio=0)))


def test_lr_scaling_note_from_reference():
    config = TrainConfig(per_device_train_batch_size=4, gradient_accumulation_steps=4)
    [note] = [n for n in advise(config, reference=(2e-4, 16)) if n.rule == "lr_scaling"]
    assert "keep its learning rate" in note.message
    [note] = [n for n in advise(config, reference=(2e-4, 4)) if n.rule == "lr_scaling"]
    assert "linear rule 0.0008" in note.message and "square-root rule 0.0004" in note.message


def test_template_system_prompt_warning(tiny_tokenizer):
    from core.template import ChatEncoder

    injects = advisor.template_injects_system(ChatEncoder(tiny_tokenizer))
    assert injects is True  # the tiny ChatML template injects "You are a tiny test model."
    assert "template_system" in rules(advise(TrainConfig(system_prompt=""), template_injects_system=injects))
    assert "template_system" not in rules(
        advise(TrainConfig(system_prompt="You are Nova."), template_injects_system=injects)
    )


def test_loss_band_rules():
    assert loss_notes(steps([2.0] * (advisor.MIN_STEPS_FOR_TREND - 1))) == []
    assert "healthy" in rules(loss_notes(steps([2.5, 2.2, 1.8, 1.5, 1.2, 1.1, 1.0, 1.0])))
    assert "memorising" in rules(loss_notes(steps([2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.04, 0.03])))
    assert "under_trained" in rules(loss_notes(steps([3.0, 2.8, 2.6, 2.5, 2.3, 2.2, 2.1, 2.0])))
    assert "flat_loss" in rules(loss_notes(steps([2.0, 2.01, 1.99, 2.0, 2.0, 1.98, 2.01, 1.99])))


def test_overfitting_rule():
    falling = [2.0, 1.6, 1.3, 1.1, 0.95, 0.9, 0.85, 0.8]
    assert "overfitting" in rules(loss_notes(steps(falling, evals=[1.2, 1.1, 1.3])))
    assert "overfitting" not in rules(loss_notes(steps(falling, evals=[1.2, 1.1, 1.05])))


def test_summary_card():
    events = steps([2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.04, 0.03]) + [
        {
            "type": "done",
            "step": 8,
            "total_steps": 8,
            "final_loss": 0.03,
            "final_eval_loss": None,
            "tokens_per_s": 120.0,
            "train_runtime_s": 60,
        }
    ]
    card = summary_card(events)
    assert "Run done" in card and "0.0300" in card and "learnt word for word" in card
    assert "probes: auto" in card  # a low loss says nothing about unseen phrasings: probe it
    probed = events + [
        {"type": "probe", "model": "base", "step": 0, "recall": 0.0, "hits": 0, "n": 10},
        {"type": "probe", "model": "tuned", "step": 8, "recall": 0.4, "hits": 4, "n": 10},
    ]
    card = summary_card(probed)
    assert "4/10 unseen phrasings" in card and "more phrasings for the missed facts" in card
    assert "failed" in summary_card([{"type": "error", "message": "CUDA out of memory"}])
    assert summary_card(steps([1.0])) == "Run in progress."


def test_notes_come_in_chinese_for_lang_zh():
    config = TrainConfig(
        per_device_train_batch_size=8,
        gradient_accumulation_steps=4,
        num_train_epochs=20,
        loraplus_lr_ratio=4,
        learning_rate=2e-3,
        warmup_ratio=0.3,
    )
    english, chinese = advise(config, 40, True, (2e-4, 4)), advise(config, 40, True, (2e-4, 4), lang="zh")
    assert [n.rule for n in english] == [n.rule for n in chinese] and len(chinese) >= 8
    for en, zh in zip(english, chinese):
        assert en.message != zh.message and any("\u4e00" <= ch <= "\u9fff" for ch in zh.message), zh
    card = summary_card(
        steps([2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.04, 0.03])
        + [{"type": "done", "step": 8, "total_steps": 8, "final_loss": 0.03}],
        lang="zh",
    )
    assert "运行完成" in card and "逐字学会" in card


def test_a_notes_fix_applied_to_the_config_clears_it():
    config = TrainConfig(per_device_train_batch_size=8, gradient_accumulation_steps=1, num_train_epochs=3)
    [few] = [n for n in advise(config, 42) if n.rule == "few_steps"]  # 6 steps per epoch -> 18 steps
    fixed = TrainConfig(**{**config.to_dict(), **few.fix})
    assert fixed.num_train_epochs == "auto" and "few_steps" not in rules(advise(fixed, 42))
    for rule, cfg in [
        ("warmup", TrainConfig(warmup_ratio=0.3)),
        ("epochs", TrainConfig(num_train_epochs=20)),
        ("batch_small_data", TrainConfig(per_device_train_batch_size=8, gradient_accumulation_steps=4)),
    ]:
        [note] = [n for n in advise(cfg, 500) if n.rule == rule]
        assert rule not in rules(advise(TrainConfig(**{**cfg.to_dict(), **note.fix}), 500)), rule
