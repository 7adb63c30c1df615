"""Paraphrase augmentation (core.augment): rule families, filters, balance, the dataset writer, the
OpenAI-compatible generator against a local HTTP server, the local-model generator, the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core import augment, paraphrase_rules
from core.augment import (
    NEAR_DUPLICATE_JACCARD,
    JunkOutput,
    LocalGenerator,
    NearDuplicates,
    OpenAIGenerator,
    assign_quotas,
    augment_dataset,
    make_generator,
    parse_phrasings,
    preview,
    user_turns,
)
from core.data import load_dataset
from core.errors import UserInputError
from core.paraphrase_rules import FAMILIES, RulesGenerator, detect_lang, embedded_clause, find_facts, missing_facts
from tests.conftest import write_jsonl

ROOT = Path(__file__).resolve().parent.parent

# One source per language that every family can work on; its facts must survive every rule.
SOURCES = {
    "en": (
        "What are your opening hours on Saturday and Sunday? My order #A1234 cost $79, email me at jo@example.com.",
        ["Saturday", "Sunday", "#A1234", "$79", "jo@example.com"],
    ),
    "zh": (
        "你们周末的营业时间是几点？我的订单A1234花了$79，请发邮件到jo@example.com。",
        ["A1234", "$79", "jo@example.com"],
    ),
}


def chat(user: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


class ListGenerator:
    """A stand-in generator: returns what `phrasings(text, n)` gives; raises `fail` on call `fail_at`."""

    name = "fake"

    def __init__(self, phrasings, fail_at: int | None = None, fail: Exception | None = None):
        self.phrasings, self.fail_at, self.fail, self.calls = phrasings, fail_at, fail, []

    def generate(self, text: str, n: int, lang: str, seed: int = 0) -> list[str]:
        self.calls.append((text, n, lang))
        if self.fail_at is not None and len(self.calls) >= self.fail_at:
            raise self.fail
        return self.phrasings(text, n)


WORDS = (
    "could you say",
    "tell me about",
    "i need to know",
    "quick one on",
    "asking again about",
    "what about",
    "help with",
    "please explain",
    "wondering about",
    "need info on",
    "any news on",
    "curious about",
)


def varied(text: str, n: int) -> list[str]:
    """Up to n phrasings that share few character shingles with each other or the source."""
    return [f"{words} {text.rstrip('?')}" for words in WORDS[:n]]


# ----------------------------------------------------------------------------- rule families
@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_gives_distinct_phrasings_that_keep_the_facts(family, lang):
    source, facts = SOURCES[lang]
    phrasings = RulesGenerator([family]).generate(source, 4, detect_lang(source), seed=1)
    assert phrasings, f"{family} gave nothing for {lang}"
    assert source not in phrasings
    assert len(set(phrasings)) == len(phrasings)
    for phrasing in phrasings:
        assert all(fact in phrasing for fact in facts), (family, phrasing)
        assert missing_facts(source, phrasing) == []


def test_families_change_what_they_say_they_change():
    en = SOURCES["en"][0]

    def one(family, lang="en", text=en):
        return RulesGenerator([family]).generate(text, 30, lang, seed=0)

    assert any(p.startswith(("Hi", "Hello", "Hey", "Good morning")) for p in one("wrap"))
    assert any(p.endswith(("Thanks!", "Thank you.", "Cheers!")) for p in one("wrap"))
    assert "I was wondering what your opening hours are on Saturday and Sunday." in " ".join(one("indirect"))
    assert any(p.startswith("On Saturday and Sunday, what are") for p in one("reorder"))
    assert any("Sunday and Saturday" in p for p in one("reorder"))
    assert any("business hours" in p or "opening times" in p for p in one("synonym"))
    assert all(p[0].islower() and "Saturday" in p for p in one("casing"))  # names keep their capital
    assert any("??" in p for p in one("punct"))
    zh = SOURCES["zh"][0]
    assert any(p.startswith("周末你们") for p in one("reorder", "zh", zh))
    assert any("开门时间" in p or "上班时间" in p for p in one("synonym", "zh", zh))
    assert any("?" in p and "？" not in p for p in one("casing", "zh", zh))  # half-width punctuation


def test_typos_never_touch_numbers_emails_codes_or_names():
    source = "Please send the Aurora invoice for order #A1234 totalling $1,249.50 to billing@example.com today"
    phrasings = RulesGenerator(["typo"]).generate(source, 40, "en", seed=3)
    assert len(phrasings) == 40
    for phrasing in phrasings:
        for fact in ("Aurora", "#A1234", "$1,249.50", "billing@example.com"):
            assert fact in phrasing
        changed = [(a, b) for a, b in zip(source.split(), phrasing.split()) if a != b]
        assert len(changed) == 1 and len(changed[0][0]) >= 5, changed  # one slip, in a longer word


@pytest.mark.parametrize(
    "question,clause",
    [
        ("What are your hours?", "what your hours are"),
        ("What are your hours on Sunday?", "what your hours are on Sunday"),
        ("How much is the Aurora?", "how much the Aurora is"),
        ("How do I apply my rewards at checkout?", "how I apply my rewards at checkout"),
        ("When does the store open?", "when the store opens"),
        ("How long does shipping take?", "how long shipping takes"),
        ("Do you ship to Canada?", "if you ship to Canada"),
        ("Can I return my Ember?", "if I can return my Ember"),
        ("Which items are in the box?", "which items are in the box"),
        ("Is the Aurora kettle dishwasher safe?", None),  # where the subject ends is unknown: kept as is
        ("When did my order ship?", None),  # would need the past tense
    ],
)
def test_indirect_questions(question, clause):
    masked = paraphrase_rules.mask(question)
    result = embedded_clause(paraphrase_rules.split_end(masked.text)[0])
    assert (masked.unmask(result) if result else None) == clause


def test_rules_are_deterministic_for_a_seed_and_combine_families_to_reach_n():
    generator = RulesGenerator()
    first = generator.generate("How do I return an item?", 8, "en", seed=7)
    assert first == RulesGenerator().generate("How do I return an item?", 8, "en", seed=7)
    assert first != generator.generate("How do I return an item?", 8, "en", seed=8)
    assert len(first) == 8 and len(set(first)) == 8
    zh = generator.generate("怎么退货？", 8, "zh", seed=7)
    assert len(set(zh)) == 8 and all("退" in p for p in zh)


def test_facts_found_in_english_and_chinese():
    facts = {f.text: f.required for _, _, f in find_facts("Kettle price? I paid $29 for the Pebble, code SAVE10.")}
    assert facts == {"Kettle": False, "$29": True, "Pebble": True, "SAVE10": True}  # "I" is no fact
    zh = [
        f.text for _, _, f in find_facts("Pebble厨房秤多少钱？发邮件至help@kettlebloom.com或打开kettlebloom.com/chat")
    ]
    assert zh == ["Pebble", "help@kettlebloom.com", "kettlebloom.com/chat"]
    assert missing_facts("Is it $79?", "Is it 79 dollars?") == []
    assert missing_facts("Is it $79?", "Is it $97?") == ["$79"]
    assert missing_facts("Does the Aurora ship?", "does the aurora ship") == []


def test_rules_unknown_family_names_the_allowed_ones():
    with pytest.raises(UserInputError, match="allowed: wrap, indirect, reorder"):
        RulesGenerator(["wrap", "shout"])


# ------------------------------------------------------------------------------------ filters
def test_near_duplicates_catch_one_char_edits_and_keep_different_phrasings():
    index = NearDuplicates(
        NEAR_DUPLICATE_JACCARD,
        ["How long does standard shipping take to Canada?", "美国境内标准配送一般需要几个工作日才能送到？"],
    )
    assert index.match("How long does standard shiping take to Canada?")  # a dropped letter
    assert index.match("how long does standard shipping take to canada")  # case and punctuation only
    assert index.match("美国境内标准配送一般需要几个工作日才能送达？")  # one character changed
    for different in (
        "When will my parcel reach Canada if I pick standard delivery?",
        "What is the delivery time for Canada?",
        "寄到美国要多久？",
    ):
        assert index.match(different) is None


def write_faq(tmp_path: Path, records: list[dict], name: str = "faq.jsonl") -> Path:
    return write_jsonl(tmp_path / name, records)


def test_pipeline_drops_copies_near_duplicates_and_lost_facts(tmp_path):
    source = write_faq(tmp_path, [chat("How long does standard shipping take to Canada?", "5 to 7 days.")])
    planted = [
        "how long does standard shipping take to Canada",  # a copy once normalised
        "How long does standard shiping take to Canada?",  # one-character edit of the original
        "Could you tell me the delivery time for parcels going to Canada?",
        "Could you tell me the delivery time for parcels going to Canada!!",  # near the one above
        "How long does shipping take to Mexico?",  # lost the name "Canada"
        "When will my order arrive in Canada with standard shipping?",
    ]
    report = augment_dataset(source, tmp_path / "out.jsonl", ListGenerator(lambda t, n: planted), per_turn=8)
    assert (report.removed_copies, report.removed_near_duplicates, report.removed_missing_facts) == (1, 2, 1)
    new = [c[0]["content"] for c in load_dataset(tmp_path / "out.jsonl").conversations[1:]]
    assert new == [planted[2], planted[5]]


def test_leakage_check_removes_and_reports_near_copies_of_probe_questions(tmp_path):
    source = write_faq(tmp_path, [chat("What is your returns address?", "Send returns to 5 Elm St.")])
    probes = ["Where do I send my return parcel to?", "Which address should returned items go to?"]
    planted = [
        "Hi, where do I send my return parcel to?",
        "Which address should returned items go to",
        "To which address do I mail the things I send back?",
    ]
    report = augment_dataset(
        source, tmp_path / "out.jsonl", ListGenerator(lambda t, n: planted), per_turn=8, probe_questions=probes
    )
    assert report.removed_leakage == 2
    assert report.leakage == [
        {"phrasing": planted[0], "probe": probes[0]},
        {"phrasing": planted[1], "probe": probes[1]},
    ]
    written = [c[0]["content"] for c in load_dataset(tmp_path / "out.jsonl").conversations]
    assert written == ["What is your returns address?", planted[2]]
    assert "too close to a probe question" in report.summary()


def test_quotas_balance_facts_and_cap_each_turn():
    conversations = (
        [[{"role": "user", "content": "a?"}, {"role": "assistant", "content": "Fact A."}]]
        + [[{"role": "user", "content": f"b{i}?"}, {"role": "assistant", "content": "Fact B."}] for i in range(3)]
        + [[{"role": "user", "content": f"c{i}?"}, {"role": "assistant", "content": "Fact C!"}] for i in range(12)]
    )
    turns = user_turns(conversations)
    assign_quotas(turns, per_turn=4)
    totals = {}
    for turn in turns:
        totals[turn.fact] = totals.get(turn.fact, 0) + 1 + turn.quota
        assert turn.quota <= 4
    # target = max(12 originals, 1 x (1 + 4)) = 12: A is capped at 1 + 4, B reaches 12, C gets none
    assert totals == {"fact a": 5, "fact b": 12, "fact c": 12}
    assert [t.quota for t in turns if t.fact == "fact b"] == [3, 3, 3]


def test_augmented_facts_end_up_balanced(tmp_path):
    records = [chat("where is my parcel?", "Track it at example.com/track.")] + [
        chat(q, "We open at 9 am.") for q in ("when do you open?", "opening time?", "what time is it open?")
    ]
    report = augment_dataset(write_faq(tmp_path, records), tmp_path / "out.jsonl", ListGenerator(varied), per_turn=4)
    assert [(f.before, f.after) for f in report.facts] == [(1, 5), (3, 5)]
    assert report.kept == 6 and report.output_conversations == 10


# ------------------------------------------------------------------------------ augment_dataset
def test_augment_dataset_writes_originals_then_new_conversations(tmp_path):
    records = [
        chat("What are your hours on Sunday?", "We are closed on Sunday.", system="You are Tilly."),
        {
            "messages": [
                {"role": "user", "content": "Hello!"},
                {"role": "assistant", "content": "Hi, I'm Tilly."},
                {"role": "user", "content": "Do you ship to Canada?"},
                {"role": "assistant", "content": "Yes, we ship to Canada."},
            ]
        },
        chat("你们周末营业吗？", "周六上午9点到下午1点营业。"),
    ]
    source = write_faq(tmp_path, records)
    before = source.read_bytes(), source.stat().st_mtime_ns
    out = tmp_path / "augmented.jsonl"
    report = augment_dataset(source, out, RulesGenerator(), per_turn=3, seed=1)
    assert (source.read_bytes(), source.stat().st_mtime_ns) == before
    written = load_dataset(out)
    assert written.format == "openai"
    originals = load_dataset(source).conversations
    assert written.conversations[:3] == originals
    new = written.conversations[3:]
    assert len(new) == report.kept == report.output_conversations - 3 > 0
    for conversation in new:
        match = next(
            o
            for o in originals
            if len(o) == len(conversation)
            and [m["role"] for m in o] == [m["role"] for m in conversation]
            and sum(a != b for a, b in zip(o, conversation)) == 1
        )
        changed = [(a, b) for a, b in zip(match, conversation) if a != b]
        assert changed[0][0]["role"] == "user"  # only one user turn differs: assistant and system kept
    multi = [c for c in new if len(c) == 4]
    assert {c[0]["content"] == "Hello!" for c in multi} == {True, False}  # each user turn on its own
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_write_that_fails_leaves_no_half_file(tmp_path, monkeypatch):
    source = write_faq(tmp_path, [chat(f"question number {i}?", f"answer {i}") for i in range(5)])
    calls = []

    def failing_dumps(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return json.dumps(*args, **kwargs)

    monkeypatch.setattr(augment.json, "dumps", failing_dumps)
    with pytest.raises(OSError):
        augment_dataset(source, tmp_path / "out.jsonl", ListGenerator(varied), per_turn=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faq.jsonl"]


def test_generator_failing_midway_keeps_partial_results(tmp_path):
    records = [chat(f"question {w}?", f"answer {w}") for w in ("one", "two", "three", "four", "five")]
    generator = ListGenerator(varied, fail_at=3, fail=UserInputError("endpoint http://x/v1: cannot connect"))
    out = tmp_path / "out.jsonl"
    report = augment_dataset(write_faq(tmp_path, records), out, generator, per_turn=2)
    assert len(generator.calls) == 3  # stopped at the failure: no retry storm over the other turns
    assert report.kept == 4 and len(load_dataset(out).conversations) == 5 + 4
    assert report.turns_failed == 3
    assert report.errors[0].startswith("conversation 3, message 1 ('question three?'): endpoint http://x/v1")
    assert "2 later user turn(s) not attempted" in report.errors[1]


def test_junk_for_one_turn_skips_only_that_turn(tmp_path):
    def phrasings(text, n):
        if "two" in text:
            raise JunkOutput("endpoint http://x/v1: the reply holds no list of rewrites")
        return varied(text, n)

    records = [chat(f"question {w}?", f"answer {w}") for w in ("one", "two", "three")]
    report = augment_dataset(write_faq(tmp_path, records), tmp_path / "out.jsonl", ListGenerator(phrasings), per_turn=2)
    assert report.kept == 4 and report.turns_failed == 1
    assert report.errors == [
        "conversation 2, message 1 ('question two?'): endpoint http://x/v1: the reply holds no list of rewrites"
    ]


def test_nothing_generated_raises_and_writes_nothing(tmp_path):
    generator = ListGenerator(varied, fail_at=1, fail=UserInputError("endpoint http://x/v1: cannot connect"))
    with pytest.raises(UserInputError, match="no user turn could be augmented") as err:
        augment_dataset(write_faq(tmp_path, [chat("hi?", "hello")]), tmp_path / "out.jsonl", generator)
    assert "cannot connect" in str(err.value)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "out,message",
    [("faq.jsonl", "is the source dataset"), ("out.json", "use a .jsonl"), ("missing/out.jsonl", "does not exist")],
)
def test_bad_output_paths(tmp_path, out, message):
    source = write_faq(tmp_path, [chat("hi?", "hello")])
    with pytest.raises(UserInputError, match=message):
        augment_dataset(source, tmp_path / out, RulesGenerator())


def test_preview_groups_phrasings_by_fact_and_progress_counts_up(tmp_path):
    conversations = load_dataset(
        write_faq(
            tmp_path,
            [
                chat("Do you ship to Canada?", "Yes."),
                chat("Can you deliver to Canada?", "yes"),
                chat("How much is the Aurora?", "$79."),
            ],
        )
    ).conversations
    seen = []
    result = preview(
        conversations, RulesGenerator(), per_turn=3, progress=lambda done, total: seen.append((done, total))
    )
    assert [f.originals for f in result.facts] == [
        ["Do you ship to Canada?", "Can you deliver to Canada?"],
        ["How much is the Aurora?"],
    ]
    assert all(f.phrasings for f in result.facts)
    assert all("Aurora" in p for p in result.facts[1].phrasings)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert result.report.output == "" and sorted(p.name for p in tmp_path.iterdir()) == ["faq.jsonl"]
    assert json.loads(json.dumps(result.report.to_dict()))["facts"][0]["before"] == 2


def test_demo_dataset_augments_fast_and_balanced(tmp_path):
    start = time.perf_counter()
    report = augment_dataset(ROOT / "datasets_demo" / "persona_en.jsonl", tmp_path / "out.jsonl", RulesGenerator())
    assert time.perf_counter() - start < 15
    assert report.removed_missing_facts == 0  # the rules mask facts: none can be lost
    afters = [f.after for f in report.facts]
    assert min(afters) >= 0.8 * max(afters)


# ------------------------------------------------------------------------------ make_generator
def test_make_generator_builds_each_kind(tmp_path):
    rules = make_generator({"generator": "rules", "per_turn": 8, "families": "wrap,typo"})
    assert isinstance(rules, RulesGenerator) and rules.families == ("wrap", "typo")
    assert isinstance(make_generator({}), RulesGenerator)
    remote = make_generator(
        {
            "generator": "openai",
            "base_url": "http://127.0.0.1:1/v1",
            "model": "m",
            "api_key_env": "MY_KEY",
            "timeout_s": 5,
        }
    )
    assert isinstance(remote, OpenAIGenerator) and remote.api_key_env == "MY_KEY" and remote.timeout_s == 5


@pytest.mark.parametrize(
    "spec,messages",
    [
        ({"generator": "gpt"}, ["'generator' must be one of rules, openai, local"]),
        (
            {"generator": "rules", "families": ["wrap", "shout"], "per_turn": 0, "colour": 1},
            [
                "unknown key 'colour' for generator 'rules'; allowed keys: generator, per_turn, seed, families",
                "'per_turn' must be a whole number from 1 to 64",
                "'families' must be a list",
            ],
        ),
        (
            {"generator": "openai", "model": "m", "families": "wrap"},
            ["'base_url' is required", "unknown key 'families' for generator 'openai'"],
        ),
        (
            {"generator": "openai", "base_url": "localhost:11434", "model": "m", "api_key_env": "my key"},
            ["'base_url' must be an http:// or https:// URL", "'api_key_env' must be an environment variable name"],
        ),
        ({"generator": "local"}, ["'model' is required for generator 'local'"]),
        ("rules", ["must be a mapping"]),
    ],
)
def test_make_generator_reports_every_problem(spec, messages):
    with pytest.raises(UserInputError) as err:
        make_generator(spec)
    for message in messages:
        assert message in str(err.value)


# ---------------------------------------------------------------------------- parsing replies
@pytest.mark.parametrize(
    "reply,expected",
    [
        ('["When do you open?", "What time do you open?"]', ["When do you open?", "What time do you open?"]),
        ('Sure!\n```json\n["a one", "b two", "a one"]\n```', ["a one", "b two"]),
        ('{"rewrites": ["x y", 3, ""]}', ["x y"]),
        (
            "Here you go:\n1. When do you open?\n2) What time do you open?\n- Opening time?",
            ["When do you open?", "What time do you open?", "Opening time?"],
        ),
        ('1. 你们几点开门？\n2. "几点营业？"', ["你们几点开门？", "几点营业？"]),
        ("I cannot help with that.", []),
        ("[1, 2, 3]", []),
        ("", []),
    ],
)
def test_parse_phrasings(reply, expected):
    assert parse_phrasings(reply) == expected


# ------------------------------------------------------------------- OpenAI-compatible endpoint
class FakeEndpoint:
    """POST /v1/chat/completions in OpenAI's response shape, on 127.0.0.1; `mode` picks the answer."""

    def __init__(self):
        self.mode, self.requests = "ok", []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status, content_type, data = endpoint.answer(body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def answer(self, body: dict) -> tuple[int, str, bytes]:
        mode = self.mode(len(self.requests)) if callable(self.mode) else self.mode
        if mode == "slow":
            time.sleep(1.5)
        if mode == "html":
            return 200, "text/html", b"<html>It works!</html>"
        if mode == "500":
            return 500, "application/json", b'{"error": {"message": "model crashed"}}'
        message = body["messages"][-1]["content"].split("Customer message: ")[-1]
        content = (
            "I'm sorry, I can't do that."
            if mode == "junk"
            else json.dumps(
                [
                    f"Hi there, {message.lower()}",
                    f"Quick one: {message} Thanks a lot!",
                    f"{message} I would appreciate an answer.",
                ]
            )
        )
        completion = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return 200, "application/json", json.dumps(completion).encode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    server = FakeEndpoint()
    yield server
    server.close()


def test_openai_generator_against_a_local_server(endpoint, monkeypatch):
    monkeypatch.delenv("TAILOR_TEST_KEY", raising=False)
    generator = OpenAIGenerator(endpoint.base_url, "qwen2.5:3b", api_key_env="TAILOR_TEST_KEY", timeout_s=5)
    phrasings = generator.generate("When do you open?", 3, "en", seed=5)
    assert phrasings == [
        "Hi there, when do you open?",
        "Quick one: When do you open? Thanks a lot!",
        "When do you open? I would appreciate an answer.",
    ]
    request = endpoint.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "qwen2.5:3b"
    assert "3 different ways" in request["body"]["messages"][-1]["content"]
    assert request["auth"] == f"Bearer {augment.PLACEHOLDER_API_KEY}"  # no key set: a local server
    monkeypatch.setenv("TAILOR_TEST_KEY", "sk-test")
    OpenAIGenerator(endpoint.base_url, "m", api_key_env="TAILOR_TEST_KEY").generate("x y?", 1, "en")
    assert endpoint.requests[-1]["auth"] == "Bearer sk-test"


def test_openai_generator_errors_name_the_endpoint(endpoint):
    generator = OpenAIGenerator(endpoint.base_url, "m", timeout_s=0.5, max_retries=1)
    endpoint.mode = "junk"
    with pytest.raises(JunkOutput, match=rf"endpoint {endpoint.base_url} \(model 'm'\): the reply holds no list"):
        generator.generate("When do you open?", 3, "en")
    endpoint.mode = "html"
    with pytest.raises(UserInputError, match="not a chat completion"):
        generator.generate("When do you open?", 3, "en")
    endpoint.mode, before = "500", len(endpoint.requests)
    with pytest.raises(UserInputError, match="HTTP 500: .*model crashed"):
        generator.generate("When do you open?", 3, "en")
    assert len(endpoint.requests) - before == 2  # one retry, then the error
    endpoint.mode = "slow"
    with pytest.raises(UserInputError, match=r"no answer within 0.5 s \(2 tries\)"):
        generator.generate("When do you open?", 3, "en")


def test_unreachable_endpoint_fails_quickly_and_clearly():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(UserInputError, match=rf"endpoint http://127.0.0.1:{port}/v1 \(model 'm'\): cannot connect"):
        OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "m", timeout_s=2).generate("hi?", 2, "en")
    assert time.perf_counter() - start < 8  # default 2 retries with short backoff, no storm


def test_augment_dataset_through_the_endpoint_keeps_partial_results(endpoint, tmp_path):
    records = [
        chat(q, a)
        for q, a in (
            ("When do you open on Saturday?", "At 9 am."),
            ("How much is the Aurora kettle?", "It costs $79."),
            ("Do you ship to Canada?", "Yes."),
        )
    ]
    endpoint.mode = lambda count: "ok" if count <= 2 else "500"
    generator = OpenAIGenerator(endpoint.base_url, "m", timeout_s=5, max_retries=0)
    report = augment_dataset(write_faq(tmp_path, records), tmp_path / "out.jsonl", generator, per_turn=2)
    written = load_dataset(tmp_path / "out.jsonl").conversations
    assert len(written) == 3 + report.kept and report.kept == 4
    assert written[3][0]["content"] == "Hi there, when do you open on saturday?"
    assert report.errors[0].startswith("conversation 3, message 1 ('Do you ship to Canada?'): endpoint")
    assert "HTTP 500" in report.errors[0]


# ------------------------------------------------------------------------------- local model
def test_local_generator_runs_a_tiny_model_without_crashing(tiny_model_dir):
    generator = LocalGenerator(str(tiny_model_dir), max_new_tokens=24)
    try:
        phrasings = generator.generate("What is the return policy?", 2, "en", seed=0)
    except JunkOutput as err:  # a random model writes noise: reported, not a crash
        assert f"model '{tiny_model_dir}'" in str(err)
    else:
        assert all(isinstance(p, str) and p.strip() for p in phrasings)


def test_local_generator_names_a_model_that_does_not_load(tmp_path):
    with pytest.raises(UserInputError, match="no-such-model"):
        LocalGenerator(str(tmp_path / "no-such-model"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(UserInputError, match="broken"):
        LocalGenerator(str(tmp_path / "broken"))


# ---------------------------------------------------------------------------------------- CLI
def test_cli_writes_the_file_and_prints_the_report(tmp_path, capsys):
    source = write_faq(tmp_path, [chat("Do you ship to Canada?", "Yes, to Canada and the UK.")])
    probes = write_jsonl(
        tmp_path / "probes.jsonl", [{"question": "Can I get it delivered in Canada?", "expect": "Canada"}]
    )
    code = augment.main(
        [
            str(source),
            "--out",
            str(tmp_path / "out.jsonl"),
            "--per-turn",
            "3",
            "--families",
            "wrap,indirect,synonym",
            "--probes",
            str(probes),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source_conversations"] == 1 and report["output_conversations"] == 1 + report["kept"] > 1
    assert len(load_dataset(tmp_path / "out.jsonl").conversations) == report["output_conversations"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.jsonl"], "Dataset file not found"),
        (["{faq}", "--families", "wrap,shout"], "'families' must be a list"),
        (["{faq}", "--generator", "openai", "--model", "m"], "'base_url' is required"),
        (["{faq}", "--probes", "missing-probes.jsonl"], "Probes file not found"),
    ],
)
def test_cli_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, args, message):
    faq = write_faq(tmp_path, [chat("hi?", "hello")])
    argv = [a.format(faq=faq) for a in args] + ["--out", str(tmp_path / "out.jsonl")]
    assert augment.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_entry_point_runs_as_a_module(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "core.augment", str(bad), "--out", str(tmp_path / "o.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: bad.jsonl") and "line 1" in result.stderr
    assert "Traceback" not in result.stderr
