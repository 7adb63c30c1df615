"""The length analyzer (core.lengths) and the ChatEncoder fast path it relies on (core.template)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.config import TrainConfig
from core.data import load_dataset
from core.engine import encode_dataset
from core.errors import UserInputError
from core.lengths import ESTIMATE_MAX_POSITIONS, analyze_conversations, analyze_file, exact_counts, model_max_positions
from core.template import ChatEncoder, Encoded, with_system_prompt
from tests.conftest import qa_records, write_jsonl
from tests.tiny import CHATML

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the encoder's fast path is exact
def reference_encode(tokenizer, conversations, system_prompt="", train_on_prompt=False) -> list[Encoded]:
    """ChatEncoder.encode as first written (every prefix rendered through jinja, one mask per
    example): the definition the optimised encoder must reproduce token for token."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    template = _compile_jinja_template(tokenizer.chat_template)

    def render(messages, add_generation_prompt=False):
        return template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            tools=None,
            documents=None,
            **tokenizer.special_tokens_map,
        )

    rendered = []
    for conversation in conversations:
        messages = with_system_prompt(conversation, system_prompt)
        text = render(messages)
        spans = [(0, len(text))] if train_on_prompt else []
        for index, message in enumerate(messages):
            if message["role"] == "assistant" and not train_on_prompt:
                prompt = render(messages[:index], add_generation_prompt=True)
                through = render(messages[: index + 1])
                if not (text.startswith(through) and through.startswith(prompt)):
                    raise UserInputError("not prefix-stable")
                spans.append((len(prompt), len(through.rstrip())))
        rendered.append((text, spans))
    batch = tokenizer(
        [t for t, _ in rendered], add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
    )
    out = []
    for (_, spans), ids, offsets in zip(rendered, batch["input_ids"], batch["offset_mapping"]):
        offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        trained = np.zeros(len(ids), dtype=bool)
        for start, end in spans:
            # a token is trained when it overlaps a reply span
            trained |= (offsets[:, 1] > start) & (offsets[:, 0] < end) & (offsets[:, 1] > offsets[:, 0])
        out.append(Encoded(np.asarray(ids, dtype=np.int64), trained))
    return out


def _turns(*pairs: str, system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system is not None else []
    for user, assistant in zip(pairs[0::2], pairs[1::2]):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages


VARIED = [
    _turns("What is the return policy?", "You can return any item within 30 days."),
    _turns("Hello!", "Hi! How can I help?", "Shipping?", "Free over 50 euros.", "Thanks", "You're welcome."),
    _turns("Summarize.", "The answer is 42.", system="You are a shop assistant."),
    _turns("  leading and trailing spaces  ", "reply ends with newlines\n\n", "tab\tand\nnewline", " x "),
    _turns("中文的问题？", "好的，谢谢！ 🎉 émoji and accents", "<|im_end|> inside text", "{{ not a template }}"),
    _turns("placeholder-like \ue0000\ue001 text", "\ue001\ue000", "a", "b\n"),
    _turns("q", " ", "q2", "\n"),
    _turns("", "the user turn above is empty"),
    _turns("Please summarize the text. " * 30, "Translate this sentence. " * 40),
]

QWEN25_LIKE = (  # Qwen2.5's template, tool branches included (tojson on tools, truth test on content)
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- 'You are Qwen.' }}{%- endif %}{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}{%- else %}{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}{%- endif %}{%- endif %}"
    "{%- for message in messages %}{%- if (message.role == 'user') or (message.role == 'system' and not loop.first)"
    " or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>' + message.role }}{%- if message.content %}"
    "{{- '\\n' + message.content }}{%- endif %}{%- for tool_call in message.tool_calls %}"
    "{{- tool_call.arguments | tojson }}{%- endfor %}{{- '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TEMPLATES = {
    "chatml": (CHATML, True),
    "qwen25": (QWEN25_LIKE, True),
    # Content copied verbatim, with a header before the first turn and a footer: still prefix-stable.
    "plain": (
        "{{ bos_token }}{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}### assistant:\n{% endif %}",
        True,
    ),
    # Inspects the content (|trim): the fast path must stay off, prefix renders decide.
    "trim": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        False,
    ),
    # The system content is used in a condition and copied twice.
    "echo": (
        "{% if messages[0]['content'] == 'x' %}X{% endif %}{% for m in messages %}[{{ m.role }}]"
        "{{ m.content }}{{ m.content }}|{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
        False,
    ),
    "twice": (
        "{% for m in messages %}<{{ m.role }}>{{ m.content ~ '/' ~ m.content }}</{{ m.role }}>\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}",
        True,
    ),
}


@pytest.mark.parametrize(
    "template",
    [
        "{% for message in messages %}{{ message|tojson }}{% endfor %}",
        "{% for m in messages %}{{ m }}{% endfor %}",
        "{% for m in messages %}{% if '<think>' in m.content %}x{% endif %}{{ m.content }}{% endfor %}",
        "{% for m in messages %}{{ m.get('content') }}{% endfor %}",
        "{{ messages|map(attribute='content')|join }}",
        "{% for m in messages %}{% set c = m['content'] %}{{ c }}{% endfor %}",
        "{% for m in messages %}{{ [m]|tojson }}{% endfor %}",
        "{% for m in messages %}{% for k, v in m.items() %}{{ v }}{% endfor %}{% endfor %}",
        "{% for m in messages %}{{ m.content|trim }}{% endfor %}",
        "{% for m in messages %}{{ m.content if loop.last else '' }}{% endfor %}",
        "{% macro show(m) %}{{ m.content }}{% endmacro %}{% for m in messages %}{{ show(m) }}{% endfor %}",
        "{% filter upper %}{% for m in messages %}{{ m.content }}{% endfor %}{% endfilter %}",
        "{% set ms = messages[1:] %}{% set ms2 = ms %}{% set ms3 = ms2 %}{% set ms4 = ms3 %}{{ ms4|string }}",
        "{% set ns = namespace(m=none) %}{% for m in messages %}{% set ns.m = m %}{% endfor %}{{ ns.m|tojson }}",
        "{% for m in messages %}{% with x = m %}{{ x|tojson }}{% endwith %}{% endfor %}",
    ],
)
def test_templates_that_read_the_content_take_the_prefix_path(template):
    from transformers.utils.chat_template_utils import _compile_jinja_template

    from core.template import _content_is_only_copied

    environment = _compile_jinja_template(CHATML).environment
    assert _content_is_only_copied(environment.parse(CHATML))
    assert not _content_is_only_copied(environment.parse(template))


def _with_template(tiny_model_dir, template: str):
    from core.models import ModelSource, load_tokenizer

    tokenizer = load_tokenizer(ModelSource(str(tiny_model_dir)))
    tokenizer.chat_template = template
    return tokenizer


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("system_prompt, train_on_prompt", [("", False), ("Be brief.", False), ("", True)])
def test_encoder_matches_the_prefix_rendering_definition(
    tiny_model_dir, monkeypatch, name, system_prompt, train_on_prompt
):
    template, fast = TEMPLATES[name]
    tokenizer = _with_template(tiny_model_dir, template)
    encoder = ChatEncoder(tokenizer, system_prompt, train_on_prompt)
    assert encoder._skeletons_allowed is fast
    prefix_rendered = []
    by_prefix = encoder._spans_by_prefix_renders
    monkeypatch.setattr(
        encoder,
        "_spans_by_prefix_renders",
        lambda messages, text: prefix_rendered.append(1) or by_prefix(messages, text),
    )
    got = encoder.encode(VARIED)
    if not train_on_prompt:  # the fast path is taken wherever it may be (not on the empty turn)
        assert len(prefix_rendered) == (len(VARIED) if not fast else 1)
    want = reference_encode(tokenizer, VARIED, system_prompt, train_on_prompt)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.input_ids.dtype == w.input_ids.dtype and g.trained.dtype == w.trained.dtype
        np.testing.assert_array_equal(g.input_ids, w.input_ids)
        np.testing.assert_array_equal(g.trained, w.trained)
    assert any(e.trained.any() for e in got)


def test_encoder_still_rejects_templates_that_are_not_prefix_stable(tiny_model_dir):
    # Content copied verbatim, but the last message is rendered differently (no end marker).
    template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% if not loop.last %}</s>{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    encoder = ChatEncoder(_with_template(tiny_model_dir, template))
    assert encoder._skeletons_allowed
    with pytest.raises(UserInputError, match="differently from its prefixes"):
        encoder.encode([VARIED[1]])


def test_encoder_chunks_give_the_same_result(tiny_tokenizer, monkeypatch):
    import core.template

    conversations = VARIED * 3
    whole = ChatEncoder(tiny_tokenizer).encode(conversations)
    monkeypatch.setattr(core.template, "ENCODE_CHUNK", 4)
    chunked = ChatEncoder(tiny_tokenizer).encode(conversations)
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a.input_ids, b.input_ids)
        np.testing.assert_array_equal(a.trained, b.trained)


def test_counts_by_chunks_equal_the_counts_of_all_examples(tiny_tokenizer, monkeypatch):
    """analyze_conversations counts each chunk apart: the same numbers as one count over all examples."""
    import core.template
    from core.lengths import concatenated_counts, flat_counts

    conversations = VARIED * 3 + [_turns("q", "a" * 300)]  # different longest examples per chunk
    whole = exact_counts(ChatEncoder(tiny_tokenizer).encode(conversations))
    monkeypatch.setattr(core.template, "ENCODE_CHUNK", 4)
    chunks = list(ChatEncoder(tiny_tokenizer).encode_chunks(conversations))
    merged = concatenated_counts([flat_counts(chunk.lengths, chunk.trained) for chunk in chunks])
    for name in ("total", "supervised", "first_trained", "trained_at"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
    report = analyze_conversations(conversations, ChatEncoder(tiny_tokenizer), cutoff_len=64)
    assert report.summary["supervised"]["max"] == int(whole.supervised.max())


# ---------------------------------------------------------------------- estimate: hand counts
def _his(k: int) -> str:
    return " ".join(["hi"] * k)  # cl100k_base: "hi" then " hi" k-1 times, one token each


def _records(assistant_lengths, user_length: int = 1) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": _his(user_length)}, {"role": "assistant", "content": _his(k)}]}
        for k in assistant_lengths
    ]


def test_estimate_summary_and_percentiles_by_hand(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", _records(range(1, 101)))  # totals 2..101
    report = analyze_file(path, model="tiktoken", cutoff_len=1024, batch_size=8)
    assert report.mode == "estimate" and report.examples == 100 and report.max_positions == ESTIMATE_MAX_POSITIONS
    # Nearest rank: p90 is the 90th smallest of 2..101.
    assert report.summary["total"] == {
        "count": 100,
        "min": 2,
        "mean": 51.5,
        "p50": 51,
        "p90": 91,
        "p95": 96,
        "p99": 100,
        "max": 101,
    }
    assert report.summary["prompt"] == {
        "count": 100,
        "min": 1,
        "mean": 1.0,
        "p50": 1,
        "p90": 1,
        "p95": 1,
        "p99": 1,
        "max": 1,
    }
    assert report.summary["supervised"]["mean"] == 50.5 and report.summary["supervised"]["max"] == 100
    assert sum(report.histogram["counts"]) == 100
    assert report.histogram["edges"][0] == 0 and report.histogram["edges"][-1] > 101
    rows = {row["cutoff"]: row for row in report.candidates}
    assert sorted(rows) == [64, 128, 1024]  # past the longest example every row would repeat
    # cutoff 64: totals 65..101 (37 examples) are cut; example t loses t - 64 answer tokens.
    assert rows[64]["truncated_pct"] == 37.0 and rows[64]["dropped_pct"] == 0.0
    assert rows[64]["supervised_lost_pct"] == round(100 * sum(range(1, 38)) / sum(range(1, 101)), 3)
    totals = list(range(2, 102))
    for cutoff in (64, 128):
        padded = real = 0
        for start in range(0, 100, 8):
            batch = [min(t, cutoff) for t in totals[start : start + 8]]
            padded += max(batch) * len(batch)
            real += sum(batch)
        assert rows[cutoff]["padding_waste_pct"] == round(100 * (1 - real / padded), 3)
    assert report.suggested_cutoff == 128
    assert report.reason == "covers 100.0% of answer tokens; 0 of 100 examples truncated"
    assert report.warnings == []


def test_estimate_counts_system_prompt_and_train_on_prompt():
    conversations = [[{"role": "user", "content": _his(3)}, {"role": "assistant", "content": _his(5)}]]
    plain = analyze_conversations(conversations, None)
    assert (plain.summary["total"]["max"], plain.summary["supervised"]["max"]) == (8, 5)
    prompted = analyze_conversations(conversations, None, system_prompt=_his(4), train_on_prompt=True)
    assert (prompted.summary["total"]["max"], prompted.summary["supervised"]["max"]) == (12, 12)
    assert "trained tokens" in prompted.reason


def test_estimate_dropped_when_the_prompt_fills_the_cutoff():
    # The first answer starts at position 70: a cutoff of 64 keeps none of it.
    conversations = [
        [{"role": "user", "content": _his(70)}, {"role": "assistant", "content": _his(5)}],
        [{"role": "user", "content": _his(1)}, {"role": "assistant", "content": _his(5)}],
    ]
    report = analyze_conversations(conversations, None, cutoff_len=64)
    row = next(r for r in report.candidates if r["cutoff"] == 64)
    assert (row["truncated_pct"], row["dropped_pct"], row["supervised_lost_pct"]) == (50.0, 50.0, 50.0)
    assert report.suggested_cutoff == 128
    assert any("1 keep no answer token" in w for w in report.warnings)


# --------------------------------------------------------------------------- suggestion edges
def test_all_short_suggests_the_smallest_step():
    report = analyze_conversations([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]], None)
    assert report.suggested_cutoff == 64
    assert [row["cutoff"] for row in report.candidates] == [64, 1024]


def test_one_huge_outlier_within_the_target_is_ignored():
    conversations = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": _his(10)}]] * 1000
    conversations = conversations + [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": _his(149)}]]
    report = analyze_conversations(conversations, None, cutoff_len=64)
    # At 64 the outlier loses 150 - 64 = 86 of 10149 answer tokens: 0.85% <= 1%.
    assert report.suggested_cutoff == 64
    assert report.reason == "covers 99.2% of answer tokens; 1 of 1001 examples truncated"
    assert report.warnings == []
    assert analyze_conversations(conversations, None, target=0.005).suggested_cutoff == 128


def test_suggestion_capped_by_the_model_maximum():
    conversations = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": _his(300)}]] * 3
    report = analyze_conversations(conversations, None, cutoff_len=1024, max_positions=200)
    assert report.suggested_cutoff == 200 and report.max_positions == 200
    assert report.reason.startswith("the model's maximum; covers 66.")
    assert [row["cutoff"] for row in report.candidates] == [64, 128, 192, 200, 1024]
    assert any("capped at the model's maximum of 200 positions" in w and "33." in w for w in report.warnings)
    assert any("cutoff_len=1024 is above the model's maximum of 200" in w for w in report.warnings)


def test_warnings_for_a_lossy_current_value_and_padding():
    conversations = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": _his(100)}]] + [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    ] * 7
    report = analyze_conversations(conversations, None, cutoff_len=64, batch_size=8)
    lossy, padding = report.warnings
    assert lossy.startswith("cutoff_len=64 loses ") and "1 of 8 examples are truncated" in lossy
    assert "Suggested: 128." in lossy
    assert padding.startswith("cutoff_len=64 with batch size 8: ") and "padding" in padding
    assert "Suggested cutoff_len: 128" in report.table()


def test_bad_options_are_reported_together(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", qa_records(2))
    with pytest.raises(UserInputError) as err:
        analyze_file(path, model="tiktoken", cutoff_len=0, batch_size=0, target=1.5)
    assert all(name in str(err.value) for name in ("cutoff_len", "batch_size", "target"))


# ------------------------------------------------------- exact: the trainer's tokenization
def test_exact_counts_equal_the_trainer_tokenization(tmp_path, tiny_model_dir, tiny_tokenizer):
    valid = [m for m in VARIED if all(turn["content"].strip() for turn in m)]  # the loader's rule
    records = [{"messages": m} for m in valid] + qa_records(6)
    path = write_jsonl(tmp_path / "d.jsonl", records)
    for system_prompt, train_on_prompt in [
        ("", False),
        ("You are a long-winded shop assistant. " * 8, False),
        ("", True),
    ]:
        config = TrainConfig(
            dataset=str(path), cutoff_len=100_000, system_prompt=system_prompt, train_on_prompt=train_on_prompt
        )
        trainer_examples, _ = encode_dataset(config, tiny_tokenizer)
        encoder = ChatEncoder(tiny_tokenizer, system_prompt, train_on_prompt)
        counts = exact_counts(encoder.encode(load_dataset(path).conversations))
        assert counts.total.tolist() == [len(e.input_ids) for e in trainer_examples]
        assert counts.supervised.tolist() == [int(e.trained.sum()) for e in trainer_examples]
        report = analyze_file(
            path, model=str(tiny_model_dir), system_prompt=system_prompt, train_on_prompt=train_on_prompt, cutoff_len=64
        )
        assert report.mode == "exact" and report.max_positions == 256  # the tiny model's config.json
        assert report.summary["total"]["max"] == max(counts.total)
        # The trainer's truncated / dropped counts at the analyzer's candidate cutoffs.
        for row in report.candidates:
            config.cutoff_len = row["cutoff"]
            kept, stats = encode_dataset(config, tiny_tokenizer)
            assert row["truncated_pct"] == round(100 * stats["truncated"] / len(records), 3)
            assert row["dropped_pct"] == round(100 * stats["dropped"] / len(records), 3)
            lost = 1 - sum(int(e.trained.sum()) for e in kept) / counts.supervised.sum()
            assert row["supervised_lost_pct"] == pytest.approx(100 * lost, abs=1e-3)


def test_exact_suggestion_capped_by_the_tiny_models_maximum(tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "long.jsonl", _records([400, 10, 10], user_length=5))
    report = analyze_file(path, model=str(tiny_model_dir), cutoff_len=512)
    assert report.suggested_cutoff == 256
    assert any("capped at the model's maximum of 256" in w for w in report.warnings)
    assert model_max_positions(tiny_model_dir) == 256 and model_max_positions(tmp_path) is None


# ------------------------------------------------------------------------- bad files, CLI, API
BAD_FILES = {
    "missing.jsonl": None,
    "notes.txt": "hello",
    "empty.jsonl": "\n",
    "broken.jsonl": '{"messages": []}\n{not json\n',
    "schema.jsonl": json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n",
    "unknown.json": json.dumps([{"question": "hi"}]),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_give_the_loaders_message(tmp_path, tiny_model_dir, name):
    path = tmp_path / name
    if BAD_FILES[name] is not None:
        path.write_text(BAD_FILES[name], encoding="utf-8")
    with pytest.raises(UserInputError) as expected:
        load_dataset(path)
    for model in ("tiktoken", str(tiny_model_dir)):
        with pytest.raises(UserInputError) as got:
            analyze_file(path, model=model)
        assert str(got.value) == str(expected.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.lengths", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_json(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", _records(range(1, 41)))
    result = _cli(str(path), "--model", "tiktoken", "--cutoff", "32", "--batch-size", "4", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {
        "mode",
        "examples",
        "summary",
        "histogram",
        "candidates",
        "current_cutoff",
        "suggested_cutoff",
        "reason",
        "warnings",
        "max_positions",
    }
    assert set(data["summary"]) == {"total", "prompt", "supervised"}
    assert set(data["histogram"]) == {"edges", "counts"}
    assert set(data["candidates"][0]) == {
        "cutoff",
        "truncated_pct",
        "dropped_pct",
        "supervised_lost_pct",
        "padding_waste_pct",
    }
    assert (data["mode"], data["examples"]) == ("estimate", 40)
    assert (data["current_cutoff"], data["suggested_cutoff"]) == (32, 64)
    assert data["warnings"] and data["warnings"][0].startswith("cutoff_len=32 loses")


def test_cli_table_on_the_demo_set():
    demo = ROOT / "datasets_demo" / "persona_en.jsonl"
    if not demo.is_file():
        pytest.skip("demo dataset not present")
    result = _cli(str(demo), "--model", "tiktoken")
    assert result.returncode == 0, result.stderr
    assert "Suggested cutoff_len:" in result.stdout and "Estimate:" in result.stdout


def test_cli_bad_file_exits_2_without_traceback(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text("{not json\n", encoding="utf-8")
    result = _cli(str(path), "--model", "tiktoken")
    assert result.returncode == 2
    assert "broken.jsonl: 1 line(s) are not JSON" in result.stderr and "line 1" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    missing = _cli(str(tmp_path / "nope.jsonl"), "--model", "tiktoken")
    assert missing.returncode == 2 and "Dataset file not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_report_is_json_ready():
    report = analyze_conversations([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]], None)
    assert json.loads(json.dumps(report.to_dict()))["suggested_cutoff"] == 64
    assert "rows_shown" not in report.to_dict()
