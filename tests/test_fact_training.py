"""Training for facts, through the real CLI on a tiny model: probes scored during the run, the
best-recall adapter kept, early stop, epochs sized from the data, the lr scaled from its reference
batch, and the adapter's tokenizer carrying the run's system prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core import engine
from core.advisor import training_plan
from core.config import MAX_AUTO_EPOCHS, TrainConfig
from core.probes import RUN_PROBES_FILE, ProbeReport, load_probes, normalise
from core.template import ChatEncoder
from core.train import main
from tests.conftest import write_jsonl
from tests.run_helpers import events_by_type, write_config

FACTS = {
    "The Aurora costs $79.": [
        "What does the Aurora cost?",
        "Aurora price?",
        "How much is the Aurora?",
        "Price of the Aurora kettle?",
        "aurora cost",
    ],
    "Support answers at help@kettle.example.": [
        "How do I email you?",
        "Your email address?",
        "Where can I write to support?",
        "email?",
    ],
    "Refunds take 5 days.": ["How long do refunds take?", "When is my refund paid?", "refund time?"],
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def faq(tmp_path_factory) -> Path:
    records = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for a, questions in FACTS.items()
        for q in questions
    ]
    return write_jsonl(tmp_path_factory.mktemp("faq") / "faq.jsonl", records)


def test_auto_probes_are_held_out_scored_and_written(tmp_path, tiny_model_dir, faq, tiny_tokenizer):
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, faq, probes="auto", probe_steps=2, max_steps=4)
    assert main([str(config)]) == 0
    events = events_by_type(tmp_path / "run")
    probes = load_probes(tmp_path / "run" / RUN_PROBES_FILE)
    assert len(probes) == len(FACTS)  # one per fact: a fifth of 3-5 phrasings, at least one
    start = events["start"][0]
    # the held-out phrasings are not trained on
    assert start["train_examples"] == sum(map(len, FACTS.values())) - len(probes) and start["probes"] == len(probes)
    asked = {normalise(p.question) for p in probes}
    assert not asked & {normalise(q) for a, qs in FACTS.items() for q in qs if q not in [p.question for p in probes]}
    # base before training, then the adapter at step 2 and at the end (step 4)
    assert [(e["model"], e["step"]) for e in events["probe"]] == [("base", 0), ("tuned", 2), ("tuned", 4)]
    for event in events["probe"]:
        assert event["n"] == len(probes) and len(event["probe_hits"]) == len(probes)
        assert event["recall"] == pytest.approx(sum(event["probe_hits"]) / len(probes), abs=1e-4)
    done = events["done"][0]
    assert {"probe_recall", "adapter_step", "probe_cost_s"} <= set(done)
    assert not (tmp_path / "run" / "best_adapter").exists()  # a scratch folder, gone after the run


def test_every_training_step_runs_in_training_mode_after_the_probes(tmp_path, tiny_model_dir, faq, monkeypatch):
    # the probes put the model in eval mode; the engine's Trainer skips model.train() when the
    # model is in training mode already, so each step after a probe must have switched it back
    modes = []
    build = engine.build_model

    def build_and_watch(*args, **kwargs):
        model, tokenizer = build(*args, **kwargs)
        modules = list(model.modules())

        def record(module, inputs):
            if torch.is_grad_enabled():  # a training forward, not a probe's generation
                modes.append(all(m.training for m in modules))

        model.get_base_model().model.layers[0].register_forward_pre_hook(record)
        return model, tokenizer

    monkeypatch.setattr(engine, "build_model", build_and_watch)
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, faq, probes="auto", probe_steps=1, max_steps=4)
    assert main([str(config)]) == 0
    assert [e["step"] for e in events_by_type(tmp_path / "run")["probe"]] == [0, 1, 2, 3, 4]
    assert modes == [True] * 4


def scripted_recalls(monkeypatch, recalls: list[float]) -> None:
    """Probe scorings return these recalls in turn (the first is the base model's)."""
    script = iter(recalls)

    def fake_score(model, tokenizer, encoder, probes, **gen):
        recall = next(script)
        hits = [i < round(recall * len(probes)) for i in range(len(probes))]
        return ProbeReport(recall, hits, ["" for _ in probes], list(probes), 0.01)

    monkeypatch.setattr(engine, "score_probes", fake_score)


def test_best_recall_adapter_is_kept_and_patience_stops_the_run(tmp_path, tiny_model_dir, faq, monkeypatch):
    # base 0, then steps 1..: 1/3, 2/3 (best), 1/3, 2/3 (a tie: not an improvement) -> patience 2 stops at step 4
    scripted_recalls(monkeypatch, [0.0, 1 / 3, 2 / 3, 1 / 3, 2 / 3, 0.0])
    config = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        faq,
        probes="auto",
        probe_steps=1,
        max_steps=10,
        probe_patience=2,
        save_steps=1,
        save_total_limit=20,
    )
    assert main([str(config)]) == 0
    run = tmp_path / "run"
    events = events_by_type(run)
    done = events["done"][0]
    assert done["step"] == 4 and done["early_stopped"] is True
    assert "early stop at step 4" in events["warning"][-1]["message"]
    # ties go to the later adapter: the best is step 4's, which is also the final one
    assert done["adapter_step"] == 4 and done["probe_recall"] == pytest.approx(2 / 3, abs=1e-4)


def test_an_earlier_best_adapter_replaces_the_final_one(tmp_path, tiny_model_dir, faq, monkeypatch):
    scripted_recalls(monkeypatch, [0.0, 1 / 3, 1.0, 1 / 3, 0.0])  # best at step 2 of 4
    config = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        faq,
        probes="auto",
        probe_steps=1,
        max_steps=4,
        save_steps=1,
        save_total_limit=20,
    )
    assert main([str(config)]) == 0
    run = tmp_path / "run"
    done = events_by_type(run)["done"][0]
    assert done["adapter_step"] == 2 and done["step"] == 4
    kept = load_file(run / "adapter" / "adapter_model.safetensors")
    step2 = load_file(run / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    step4 = load_file(run / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    assert set(kept) == set(step2)
    for key in kept:
        torch.testing.assert_close(kept[key], step2[key])
    assert any(not torch.equal(kept[k], step4[k]) for k in kept)  # it is not the final adapter


def test_best_adapter_off_keeps_the_final_one(tmp_path, tiny_model_dir, faq, monkeypatch):
    scripted_recalls(monkeypatch, [0.0, 1.0, 0.0])
    config = write_config(
        tmp_path / "c.yaml", tiny_model_dir, faq, probes="auto", probe_steps=1, max_steps=2, probe_best_adapter=False
    )
    assert main([str(config)]) == 0
    assert events_by_type(tmp_path / "run")["done"][0]["adapter_step"] == 2


def test_a_probe_file_is_used_as_given(tmp_path, tiny_model_dir, faq):
    probe_file = write_jsonl(tmp_path / "probes.jsonl", [{"question": "Aurora?", "expect": "$79"}])
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, faq, probes=str(probe_file), max_steps=1)
    assert main([str(config)]) == 0
    events = events_by_type(tmp_path / "run")
    assert events["start"][0]["train_examples"] == sum(map(len, FACTS.values()))  # nothing held out
    assert [e["n"] for e in events["probe"]] == [1, 1]


def test_a_bad_probe_file_is_a_clear_error(tmp_path, tiny_model_dir, faq, capsys):
    probe_file = tmp_path / "probes.jsonl"
    probe_file.write_text('{"question": "Aurora?"}\n', encoding="utf-8")
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, faq, probes=str(probe_file), max_steps=1)
    assert main([str(config)]) == 2
    err = capsys.readouterr().err
    assert "probes.jsonl" in err and "line 1" in err and "expect" in err and "Traceback" not in err


@pytest.mark.parametrize("examples, expected_epochs", [(42, 33), (556, 3), (3, MAX_AUTO_EPOCHS)])
def test_auto_epochs_aim_at_the_target_steps(examples, expected_epochs):
    config = TrainConfig(
        num_train_epochs="auto", target_steps=200, per_device_train_batch_size=8, gradient_accumulation_steps=1
    )
    plan = training_plan(config, examples)
    assert plan["num_train_epochs"] == expected_epochs
    assert plan["total_steps"] == expected_epochs * plan["steps_per_epoch"]
    # a floor on the epochs: the larger set gets 6 passes, the small one keeps its ~200 steps
    floored = training_plan(TrainConfig(**{**config.to_dict(), "auto_min_epochs": 6}), examples)
    assert floored["num_train_epochs"] == max(expected_epochs, 6)


@pytest.mark.parametrize("rule, expected", [("linear", 2e-3), ("sqrt", 1e-3 * 2**0.5)])
def test_lr_is_scaled_from_its_reference_batch(rule, expected):
    config = TrainConfig(
        learning_rate=1e-3,
        lr_reference_batch=8,
        lr_scaling_rule=rule,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
    )
    assert training_plan(config, 100)["learning_rate"] == pytest.approx(expected)


def test_the_trainer_runs_the_resolved_plan(tmp_path, tiny_model_dir, faq):
    config = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        faq,
        max_steps=-1,
        num_train_epochs="auto",
        target_steps=6,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        lr_reference_batch=2,
        lr_scaling_rule="linear",
    )
    assert main([str(config)]) == 0
    events = events_by_type(tmp_path / "run")
    start, done = events["start"][0], events["done"][0]
    # 12 chats / batch 4 = 3 steps per epoch -> 2 epochs for ~6 steps; lr 1e-3 x 4 / 2
    assert start["plan"]["num_train_epochs"] == 2 and start["plan"]["learning_rate"] == pytest.approx(2e-3)
    assert done["total_steps"] == 6 and done["step"] == 6
    assert max(e["lr"] for e in events["step"]) == pytest.approx(2e-3)
    saved = (tmp_path / "run" / "config.yaml").read_text(encoding="utf-8")
    assert "num_train_epochs: auto" in saved  # the run folder keeps what the user wrote


def test_the_adapter_tokenizer_renders_with_the_run_system_prompt(tmp_path, tiny_model_dir, faq, tiny_tokenizer):
    from transformers import AutoTokenizer

    config = write_config(
        tmp_path / "c.yaml", tiny_model_dir, faq, max_steps=1, system_prompt='You are "Tilly" of Kettlebloom.'
    )
    assert main([str(config)]) == 0
    saved = AutoTokenizer.from_pretrained(tmp_path / "run" / "adapter")
    chat = [{"role": "user", "content": "Aurora price?"}]
    trained = ChatEncoder(tiny_tokenizer, 'You are "Tilly" of Kettlebloom.').prompt_for_reply(chat)
    assert saved.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == trained
    own = [{"role": "system", "content": "Be brief."}, *chat]  # a conversation's own system turn still wins
    assert "Be brief." in saved.apply_chat_template(own, tokenize=False) and "Tilly" not in saved.apply_chat_template(
        own, tokenize=False
    )
    assert json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())["r"] > 0


def test_augment_rules_adds_phrasings_that_leave_the_probes_out(tmp_path, tiny_model_dir, faq):
    config = write_config(
        tmp_path / "c.yaml", tiny_model_dir, faq, probes="auto", augment="rules", augment_per_turn=4, max_steps=1
    )
    assert main([str(config)]) == 0
    run = tmp_path / "run"
    events = events_by_type(run)
    [augment] = events["augment"]
    originals = sum(map(len, FACTS.values())) - len(FACTS)  # one probe per fact held out
    assert augment["source_conversations"] == originals < augment["output_conversations"]
    assert events["start"][0]["train_examples"] == augment["output_conversations"]
    trained = [json.loads(line)["messages"][0]["content"] for line in (run / "augmented.jsonl").open(encoding="utf-8")]
    assert len(trained) == augment["output_conversations"]
    probes = {normalise(p.question) for p in load_probes(run / RUN_PROBES_FILE)}
    assert not probes & {normalise(q) for q in trained}


def test_an_unreachable_paraphrase_endpoint_fails_before_training(tmp_path, tiny_model_dir, faq, capsys):
    config = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        faq,
        augment="openai",
        augment_model="m",
        augment_base_url="http://127.0.0.1:9/v1",
        max_steps=1,
    )
    assert main([str(config)]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1:9" in err and "Traceback" not in err
    events = events_by_type(tmp_path / "run")
    assert "step" not in events and "start" not in events and not (tmp_path / "run" / "augmented.jsonl").exists()
