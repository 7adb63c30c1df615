"""Fact probes: the matching rule, probe files, answer parts, held-out phrasings, greedy scoring and
`python -m core.probes` on a run folder holding a tiny model's adapter."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.config import TrainConfig, save_config
from core.errors import UserInputError
from core.models import ModelSource, load_model
from core.probes import (
    Probe,
    auto_probes,
    distinctive_parts,
    greedy_answers,
    load_probes,
    main,
    matches,
    normalise,
    report_from_answers,
    save_probes,
    score_probes,
)
from core.template import ChatEncoder
from tests.conftest import write_jsonl

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny model's matmuls are too small to split; spinning threads only slow a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return load_model(ModelSource(str(tiny_model_dir)), device="cpu").eval()


# ---------------------------------------------------------------------------------- matching
@pytest.mark.parametrize(
    "expect, answer",
    [
        ("1,000", "We have 1000 in stock."),
        ("$79", "It costs $ 79."),
        ("$79", "It costs 79 dollars."),
        ("$79", "It costs 79 USD."),
        ("$79", "It costs $79.00 today."),
        ("8 am", "We open at 8am."),
        ("8 am", "We open at 8:00 AM."),
        ("8 am", "We open at 8 a.m. sharp."),
        ("9 am to 1 pm", "Saturday 9:00 am to 1 p.m."),
        ("3 to 5 business days", "Delivery takes 3-5 business days."),
        ("30 days", "You get a 30-day return window."),
        ("10%", "Save 10 percent."),
        ("Tilly", "我是ＴＩＬＬＹ，很高兴为您服务。"),
        ("上午9点", "We open at 9 am on Saturday."),
        ("$5", "每消费5美元积1分"),
        ("You're welcome", "You’re   welcome!"),
    ],
)
def test_equivalent_writings_match(expect, answer):
    assert matches(answer, [expect])


@pytest.mark.parametrize(
    "expect, answer",
    [
        ("9", "It costs $19."),
        ("9", "It weighs 9.5 kg."),
        ("95", "It costs $4.95."),
        ("$5", "Spend $50 or more."),
        ("8 am", "We open at 18:00."),
        ("$79", "It costs 79 euros."),
    ],
)
def test_numbers_match_only_whole(expect, answer):
    assert not matches(answer, [expect])


def test_number_boundaries_allow_units_and_symbols_around():
    assert matches("We open at 9 am.", ["9"]) and matches("It is $9.", ["9"]) and matches("Costs 9.", ["9"])


def test_every_expected_string_is_required():
    assert matches("Aurora costs $79 and has a 2 years warranty.", ["$79", "2 years"])
    assert not matches("Aurora costs $79 and has a 2 years warranty.", ["$79", "3 years"])
    assert not matches("anything", [])


def test_normalise_is_idempotent_on_the_canonical_forms():
    for text in ("8:00 AM to 6 p.m.", "$ 1,299.00", "3 to 5 business days", "上午9点到下午1点"):
        assert normalise(normalise(text)) == normalise(text)
    assert normalise("  Spend   $ 1,299.00\n") == "spend $1299"


# ------------------------------------------------------------------------------ probe files
def test_probes_round_trip(tmp_path):
    probes = [Probe("Kettle price?", ["$79"], "aurora"), Probe("你好", ["Tilly", "Kettlebloom"])]
    path = tmp_path / "probes.jsonl"
    save_probes(probes, path)
    assert load_probes(path) == probes
    assert [p.name for p in tmp_path.iterdir()] == ["probes.jsonl"]  # no temp file left behind
    write_jsonl(path, [{"question": "Q?", "expect": "A"}])
    assert load_probes(path) == [Probe("Q?", ["A"], "")]  # a single string is a list of one


def test_load_probes_lists_every_problem_with_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"question": "ok?", "expect": "yes"}),
        "{not json",
        json.dumps({"expect": "x"}),
        json.dumps({"question": "Q", "expect": ["a", ""]}),
        json.dumps({"question": "Q", "expect": "a", "answer": "b"}),
        json.dumps({"question": "Q"}),
        "",
        json.dumps(["Q", "a"]),
        json.dumps({"question": "Q", "expect": "a", "fact": 3}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserInputError) as err:
        load_probes(path)
    problems = err.value.problems
    assert str(path) in err.value.title and len(problems) == 7
    assert problems[0].startswith("line 2: not valid JSON")
    assert problems[1] == "line 3: field 'question' is missing or not a non-empty string"
    assert problems[2].startswith("line 4: field 'expect' must be a non-empty string or a list of non-empty strings")
    assert problems[3] == "line 5: unknown key(s) 'answer'; allowed keys: question, expect, fact"
    assert problems[4].startswith("line 6: field 'expect'") and "missing" in problems[4]
    assert problems[5].startswith("line 8: expected a JSON object")
    assert problems[6] == "line 9: field 'fact' must be a string, got int"


def test_load_probes_missing_or_empty_file(tmp_path):
    with pytest.raises(UserInputError, match="Probes file not found: .*nope.jsonl"):
        load_probes(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="holds no probes"):
        load_probes(tmp_path / "empty.jsonl")


# ------------------------------------------------------------------------- distinctive parts
@pytest.mark.parametrize(
    "answer, parts",
    [
        ("The Aurora kettle costs $79 and holds 1.7 litres.", ["$79", "1.7 litres", "Aurora"]),
        ("Write to help@example.com and we reply within 24 hours.", ["help@example.com", "24 hours"]),
        ("We open at 9 am on weekdays.", ["9 am"]),
        ("Use code WELCOME10 at checkout; your ticket is KB-2291.", ["WELCOME10", "KB-2291"]),
        ("Call 1-800-555-0142 or visit kettlebloom.com/chat.", ["kettlebloom.com/chat", "1-800-555-0142"]),
        ("Our loyalty scheme is called Bloom Points.", ["Bloom Points"]),
        ("Sprout is the herb garden made by Kettlebloom.", ["Kettlebloom"]),  # sentence-initial: maybe not a name
        ("Pebble厨房秤售价$29，精确到1克。", ["$29", "1克", "Pebble"]),
        ("周六上午9点到下午1点营业。", ["上午9点", "下午1点"]),
        ("请发邮件至help@kettlebloom.com，我们会尽快回复。", ["help@kettlebloom.com"]),
        ("Type 'agent' and a person will join.", ["agent"]),
        ("Thanks, wonderful!", ["wonderful"]),  # nothing distinctive: the longest content word
    ],
)
def test_distinctive_parts(answer, parts):
    assert distinctive_parts(answer) == parts


def test_distinctive_parts_are_at_most_three_and_deduplicated():
    parts = distinctive_parts("Email a@x.com, a@x.com or b@x.com; call 1-800-555-0142; pay $5, $6 or $7.")
    assert parts == ["a@x.com", "b@x.com", "1-800-555-0142"]
    assert distinctive_parts("Tilly says hi. Ask Tilly!") == ["Tilly"]


def test_every_answer_satisfies_its_own_parts():
    answers = [
        "Aurora costs $79 - a 1.7-litre kettle.",
        "上午9点到下午1点",
        "Open 8:00 AM to 6 p.m. Eastern Time.",
        "Spend over $1,000.00 and get 10 percent off.",
        "Returns take 3 to 5 business days.",
    ]
    for answer in answers:
        assert matches(answer, distinctive_parts(answer)), answer


# ------------------------------------------------------------------------------ auto probes
def chat(question: str, answer: str, system: str | None = None) -> list[dict]:
    turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return ([{"role": "system", "content": system}] if system else []) + turns


PRICE = "Aurora costs $79."
HOURS = "We are open 8 am to 6 pm."
RARE = "The warranty lasts 2 years."


def faq() -> list[list[dict]]:
    """PRICE: 10 phrasings (one asked twice, one with a system turn), HOURS: 5, RARE: 2, and
    multi-turn chats that ask each HOURS phrasing again (upper-cased) as a follow-up."""
    price = [chat(f"How much is the kettle, version {i}?", PRICE) for i in range(10)]
    price.append(chat("how much is the kettle,   version 3?", PRICE))
    price.append(chat("Kettle price, please?", PRICE, system="Be brief."))
    hours = [f"When are you open, take {i}?" for i in range(4)] + ["Opening hours?"]
    multi = [chat("Hi", "Hello!") + chat(question.upper(), HOURS) for question in hours]
    return (
        price
        + [chat(question, HOURS) for question in hours]
        + multi
        + [chat("Warranty?", RARE), chat("How long is the warranty?", RARE)]
    )


def test_auto_probes_holds_out_phrasings_per_answer():
    conversations = faq()
    training, probes = auto_probes(conversations, seed=1)
    by_fact = {fact: [p for p in probes if p.fact == fact] for fact in (PRICE, HOURS, RARE)}
    assert len(by_fact[PRICE]) == 2  # round(0.2 x 11 distinct phrasings)
    assert len(by_fact[HOURS]) == 1  # round(0.2 x 5)
    assert by_fact[RARE] == []  # fewer than 3 phrasings: nothing to spare
    assert all(p.expect == distinctive_parts(p.fact) for p in probes)
    held = {normalise(p.question) for p in probes}
    for conversation in training:  # no probe phrasing left anywhere, multi-turn chats included
        assert not any(m["role"] == "user" and normalise(m["content"]) in held for m in conversation)
    removed = [c for c in conversations if c not in training]
    assert any(len(c) == 4 for c in removed)  # the multi-turn chat repeating the held-out HOURS phrasing
    assert len(training) + len(removed) == len(conversations)
    assert training == [c for c in conversations if c in training]  # original order


def test_auto_probes_is_deterministic_per_seed_and_answer():
    conversations = faq()
    first = auto_probes(conversations, seed=7)
    assert auto_probes(conversations, seed=7) == first
    shuffled = conversations[:]
    random.Random(0).shuffle(shuffled)
    # same held-out phrasings whatever the order of the input
    assert sorted(p.question for p in auto_probes(shuffled, seed=7)[1]) == sorted(p.question for p in first[1])
    # a group's choice does not depend on the other groups
    only_price = [c for c in conversations if c[-1]["content"] == PRICE]
    assert [p.question for p in auto_probes(only_price, seed=7)[1]] == [p.question for p in first[1] if p.fact == PRICE]
    held_by_seed = {tuple(sorted(p.question for p in auto_probes(conversations, seed=s)[1])) for s in range(10)}
    assert len(held_by_seed) > 1


def test_auto_probes_options_are_checked():
    with pytest.raises(UserInputError, match="share must be between 0 and 1"):
        auto_probes(faq(), share=1.0)
    with pytest.raises(UserInputError, match="min_phrasings must be >= 2"):
        auto_probes(faq(), min_phrasings=1)


# -------------------------------------------------------------------------------- scoring
QUESTIONS = [
    "Hi",
    "What is the return policy for items I bought online last week?",
    "Shipping?",
    "Hello! How can I help you today? Our shop opens at 9 am and closes at 6 pm.",
    "42",
    "Call us",
]


def test_greedy_answers_batched_equals_one_at_a_time(tiny_model, tiny_tokenizer):
    encoder = ChatEncoder(tiny_tokenizer)
    side = tiny_tokenizer.padding_side
    one = greedy_answers(tiny_model, tiny_tokenizer, encoder, QUESTIONS, max_new_tokens=12, batch_size=1)
    batched = greedy_answers(tiny_model, tiny_tokenizer, encoder, QUESTIONS, max_new_tokens=12, batch_size=4)
    assert len(one) == len(QUESTIONS) and all(isinstance(a, str) for a in one)
    assert batched == one
    assert tiny_tokenizer.padding_side == side


def test_report_from_answers_counts_hits_per_probe_and_fact():
    probes = [
        Probe("price?", ["$79"], "price"),
        Probe("cost?", ["$79"], "price"),
        Probe("hours?", ["8 am", "6 pm"], "hours"),
        Probe("warranty?", ["2 years"]),
    ]
    answers = ["It is 79 dollars.", "It is $89.", "From 8:00 AM to 6 p.m.", "Two years."]
    report = report_from_answers(probes, answers, elapsed_s=1.234)
    assert report.hits == [True, False, True, False] and report.recall == 0.5
    assert report.misses() == [(probes[1], "It is $89."), (probes[3], "Two years.")]
    event = report.to_event()
    assert event == {
        "recall": 0.5,
        "n": 4,
        "hits": 2,
        "probe_hits": [1, 0, 1, 0],
        "per_fact": {"price": 0.5, "hours": 1.0, "2 years": 0.0},
        "elapsed_s": 1.23,
    }
    json.dumps(event)
    with pytest.raises(ValueError):
        report_from_answers(probes, answers[:3])


def test_score_probes_asks_every_question(tiny_model, tiny_tokenizer):
    encoder = ChatEncoder(tiny_tokenizer)
    probes = [Probe(q, ["zzqx"]) for q in QUESTIONS[:3]]
    report = score_probes(tiny_model, tiny_tokenizer, encoder, probes, max_new_tokens=8)
    assert report.answers == greedy_answers(tiny_model, tiny_tokenizer, encoder, QUESTIONS[:3], max_new_tokens=8)
    assert report.recall == 0.0 and report.probes == probes and report.elapsed_s > 0


# ------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A run folder as the trainer leaves it: config.yaml and a PEFT adapter (random lora_B, so the
    tuned model answers differently from the base model)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path_factory.mktemp("run")
    save_config(TrainConfig(model_name_or_path=str(tiny_model_dir), output_dir=str(run)), run / "config.yaml")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    lora = LoraConfig(
        r=4,
        lora_alpha=32,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(base, lora).save_pretrained(run / "adapter")
    return run


def tuned_answers(tiny_model_dir: Path, run: Path, tokenizer, questions: list[str]) -> list[str]:
    from peft import PeftModel

    base = load_model(ModelSource(str(tiny_model_dir)), device="cpu")
    model = PeftModel.from_pretrained(base, str(run / "adapter")).eval()
    return greedy_answers(model, tokenizer, ChatEncoder(tokenizer), questions)


def test_cli_scores_tuned_and_base(run_dir, tiny_model_dir, tiny_tokenizer, tmp_path, capsys):
    questions = QUESTIONS[:2]
    answer = tuned_answers(tiny_model_dir, run_dir, tiny_tokenizer, questions)[0]
    word = re.search(r"[a-z]{3,}", normalise(answer)).group()  # something the tuned model does say
    probes = tmp_path / "probes.jsonl"
    save_probes([Probe(questions[0], [word], "said"), Probe(questions[1], ["zzqx-never"], "unsaid")], probes)

    assert main([str(run_dir), "--probes", str(probes), "--json", "--base"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tuned"]["recall"] == 0.5 and out["tuned"]["probe_hits"] == [1, 0]
    assert out["tuned"]["per_fact"] == {"said": 1.0, "unsaid": 0.0}
    assert out["tuned"]["misses"][0]["question"] == questions[1]
    base_miss = next(m for m in out["base"]["misses"] if m["question"] == questions[1])
    assert base_miss["answer"] != out["tuned"]["misses"][0]["answer"]  # the adapter was on, then off

    save_probes(load_probes(probes), run_dir / "probes.jsonl")  # the trainer's auto probes
    try:
        assert main([str(run_dir)]) == 0
    finally:
        (run_dir / "probes.jsonl").unlink()
    text = capsys.readouterr().out
    assert "tuned recall  50.0%  (1/2 probes" in text and "base" not in text
    assert questions[1][:30] in text and "zzqx-never" in text


def test_cli_errors_are_one_line_and_exit_2(run_dir, tmp_path, capsys):
    assert main([str(run_dir)]) == 2  # no --probes and no auto probes in the run
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "probes.jsonl not found" in err and "Pass --probes FILE" in err

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Q"}\n', encoding="utf-8")
    assert main([str(run_dir), "--probes", str(bad)]) == 2
    assert "line 1: field 'expect'" in capsys.readouterr().err

    no_adapter = tmp_path / "fresh"
    no_adapter.mkdir()
    (no_adapter / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    assert main([str(no_adapter), "--probes", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: Run fresh has no adapter yet")

    result = subprocess.run(
        [sys.executable, "-m", "core.probes", str(tmp_path / "nowhere")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "is not a run folder: it has no config.yaml" in result.stderr
