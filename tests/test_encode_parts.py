"""ChatEncoder's fast path (a skeleton filled in without jinja, tokenized by parts between the
tokenizer's added tokens) gives exactly the tokens and trained mask of the plain definition:
tokenizer(render(messages), add_special_tokens=False), each assistant turn located by rendering
its prefixes, a token trained when it overlaps a trained span. Checked on adversarial contents,
several templates and tokenizers whose configuration does or does not allow tokenizing by parts."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest

from core.data import TOOLS
from core.template import ChatEncoder, _splits_at_added_tokens
from tests.test_lengths import TEMPLATES
from tests.test_lf_data import TOOL_TEMPLATE
from tests.tiny import CHATML

LLAMA_LIKE = (  # the end-of-turn token straight after the content, bos/eos from the tokenizer
    "{{ bos_token }}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPACE_PROMPT = (  # the generation prompt ends in a space the reply's first token takes
    "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)
FRAGMENTS = [
    "Hello",
    " leading space",
    "trailing space ",
    "  both  ",
    "\n",
    "\n\nnewlines first",
    "newlines last\n\n",
    "\t tab",
    "<|im_end|>",
    "<|im_start|>assistant\n",
    "x<|endoftext|>y",
    "<|im_",
    "end|>",
    "|>",
    "中文的问题？",
    "🙂🎉",
    "é accents ü",
    "{{ not a template }}",
    "\ue000 0\ue001",
    "The answer is 42.",
    "Please summarize the text. " * 5,
    " ",
    ".",
]


def _random_conversations(count: int, seed: int, tools: bool = False) -> list[list[dict]]:
    rng = random.Random(seed)

    def content() -> str:
        return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 4)))

    conversations = []
    for _ in range(count):
        messages = [{"role": "system", "content": content()}] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 3)):
            messages.append({"role": "user", "content": content() if rng.random() > 0.05 else ""})
            reply = {"role": "assistant", "content": content() if rng.random() > 0.05 else ""}
            if rng.random() < 0.1:
                reply["loss_weight"] = 0
            messages.append(reply)
        if tools and rng.random() < 0.5:
            call = {"type": "function", "function": {"name": "lookup", "arguments": {"q": content()}}}
            messages[-1:-1] = [
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "content": json.dumps({"found": content()})},
            ]
            messages[0][TOOLS] = [{"type": "function", "function": {"name": "lookup", "description": "d"}}]
        conversations.append(messages)
    return conversations


def definition(encoder: ChatEncoder, conversation: list[dict]) -> tuple[list[int], list[bool]]:
    """(input_ids, trained) by the definition, not by the encoder's fast path."""
    from core.template import with_system_prompt

    messages = with_system_prompt(conversation, encoder.system_prompt)
    text = encoder.render(messages)
    encoding = encoder.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, index = [], 0
    for position, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = encoder.render(messages[:position], add_generation_prompt=True)
        through = encoder.render(messages[: position + 1])
        assert text.startswith(through) and through.startswith(prompt)
        spans.append(((len(prompt), len(through.rstrip())), message.get("loss_weight", 1) != 0))
        index += 1
    if encoder.train_on_prompt:  # everything but the replies marked loss_weight 0
        cuts = [0, *[c for span, train in spans if not train for c in span], len(text)]
        trained_spans = list(zip(cuts[0::2], cuts[1::2]))
    else:
        trained_spans = [span for span, train in spans if train]
    trained = [
        end > start and any(end > a and start < b for a, b in trained_spans)
        for start, end in encoding["offset_mapping"]
    ]
    return encoding["input_ids"], trained


def _tokenizer_with(tokenizer, template: str):
    clone = copy.deepcopy(tokenizer)
    clone.chat_template = template
    return clone


def check_against_definition(encoder: ChatEncoder, conversations: list[list[dict]]) -> None:
    got = encoder.encode(conversations)
    assert len(got) == len(conversations)
    for number, (conversation, example) in enumerate(zip(conversations, got)):
        ids, trained = definition(encoder, conversation)
        assert example.input_ids.tolist() == ids, f"conversation {number}: {conversation!r}"
        assert example.trained.tolist() == trained, f"conversation {number}: {conversation!r}"
    assert any(e.trained.any() for e in got)


@pytest.mark.parametrize("template", [CHATML, LLAMA_LIKE, SPACE_PROMPT, TEMPLATES["plain"][0], TEMPLATES["twice"][0]])
@pytest.mark.parametrize("system_prompt, train_on_prompt", [("", False), (" Be brief.\n", False), ("", True)])
def test_adversarial_conversations_match_the_definition(tiny_tokenizer, template, system_prompt, train_on_prompt):
    tokenizer = _tokenizer_with(tiny_tokenizer, template)
    encoder = ChatEncoder(tokenizer, system_prompt, train_on_prompt)
    check_against_definition(encoder, _random_conversations(40, seed=len(template) + train_on_prompt))
    # Tokenized by parts wherever a reply's end does not depend on stripping a content's whitespace.
    by_parts = [s is not None and s.segments is not None for s in encoder._skeletons.values()]
    assert all(by_parts) is not (template == TEMPLATES["plain"][0] and not train_on_prompt)


def test_the_probes_catch_a_tokenizer_that_merges_across_parts(tiny_tokenizer, monkeypatch):
    """Were the configuration check to let a tokenizer through wrongly (Metaspace puts a word
    boundary at every part's start), the probe renders at skeleton time still send it whole."""
    import core.template

    tokenizer = _edited(tiny_tokenizer, _metaspace)
    monkeypatch.setattr(core.template, "_splits_at_added_tokens", lambda t: _splits_at_added_tokens(tiny_tokenizer))
    encoder = ChatEncoder(tokenizer)
    check_against_definition(encoder, _random_conversations(20, seed=13))
    assert encoder._skeletons and all(s.segments is None for s in encoder._skeletons.values() if s is not None)


def test_tool_calls_and_tool_results_match_the_definition(tiny_tokenizer):
    encoder = ChatEncoder(_tokenizer_with(tiny_tokenizer, TOOL_TEMPLATE))
    check_against_definition(encoder, _random_conversations(30, seed=7, tools=True))
    encoder = ChatEncoder(_tokenizer_with(tiny_tokenizer, TOOL_TEMPLATE), train_on_prompt=True)
    check_against_definition(encoder, _random_conversations(30, seed=8, tools=True))


def test_chatml_conversations_are_tokenized_by_parts_without_jinja(tiny_tokenizer, monkeypatch):
    """The default layout takes the fast path: after the first conversation of each shape, no
    render, and only the contents with their role headers go to the tokenizer."""
    encoder = ChatEncoder(tiny_tokenizer)
    conversations = [c for c in _random_conversations(60, seed=3) if all(m["content"] and len(m) == 2 for m in c)]
    encoder.encode(conversations)  # builds the skeletons (their probes render through jinja)
    assert encoder._skeletons and all(s is not None and s.segments is not None for s in encoder._skeletons.values())
    renders, sent = [], []
    render = encoder.render
    monkeypatch.setattr(encoder, "render", lambda *a, **k: renders.append(a) or render(*a, **k))
    import core.template

    real = core.template._batch_tokenizer

    def spying(tokenizer):
        tokenize = real(tokenizer)
        return lambda texts: sent.extend(texts) or tokenize(texts)

    monkeypatch.setattr(core.template, "_batch_tokenizer", spying)
    again = encoder.encode(conversations)
    assert renders == []
    # One text per message: its role header and content; the default system turn is tokenized once.
    assert sorted(sent) == sorted(f"{m['role']}\n{m['content']}" for c in conversations for m in c)
    for conversation, example in zip(conversations, again):
        assert (example.input_ids.tolist(), example.trained.tolist()) == definition(encoder, conversation)


def test_encode_chunks_mixing_both_paths_keeps_the_order(tiny_tokenizer, monkeypatch):
    """Conversations tokenized whole (an empty turn, a loss_weight) between ones tokenized by parts."""
    import core.template

    monkeypatch.setattr(core.template, "ENCODE_CHUNK", 7)
    encoder = ChatEncoder(tiny_tokenizer)
    conversations = _random_conversations(50, seed=11)
    kinds = {bool(encoder._plain_skeleton(c)) for c in conversations}
    assert kinds == {True, False}
    check_against_definition(encoder, conversations)
    lengths = np.concatenate([chunk.lengths for chunk in encoder.encode_chunks(conversations)])
    assert lengths.tolist() == [len(definition(encoder, c)[0]) for c in conversations]


def _edited(tokenizer, edit) -> object:
    """A copy of the tokenizer with its backend's JSON changed by `edit`."""
    from tokenizers import Tokenizer

    clone = copy.deepcopy(tokenizer)
    config = json.loads(clone.backend_tokenizer.to_str())
    edit(config)
    clone._tokenizer = Tokenizer.from_str(json.dumps(config))
    return clone


def _lowercase(config):
    config["normalizer"] = {"type": "Lowercase"}


def _lstrip_end(config):
    for token in config["added_tokens"]:
        if token["content"] == "<|im_end|>":
            token["lstrip"] = True


def _metaspace(config):
    config["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}


def _prefix_space(config):
    config["pre_tokenizer"]["add_prefix_space"] = True


@pytest.mark.parametrize("edit", [_lowercase, _lstrip_end, _metaspace, _prefix_space])
def test_tokenizers_that_may_merge_across_parts_tokenize_whole_texts(tiny_tokenizer, edit):
    tokenizer = _edited(tiny_tokenizer, edit)
    assert _splits_at_added_tokens(tokenizer) is None
    encoder = ChatEncoder(tokenizer)
    conversations = _random_conversations(25, seed=5)
    check_against_definition(encoder, conversations)
    assert all(s is None or s.segments is None for s in encoder._skeletons.values())


def test_the_tiny_and_default_layout_tokenizers_split_at_added_tokens(tiny_tokenizer):
    added = _splits_at_added_tokens(tiny_tokenizer)
    assert added is not None and set(added.values()) == {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    # An added token holding another's first character later on could match across a content's end.
    overlapping = copy.deepcopy(tiny_tokenizer)
    overlapping.add_special_tokens({"additional_special_tokens": ["x<|im_end|>"]})
    assert _splits_at_added_tokens(overlapping) is None
    check_against_definition(ChatEncoder(overlapping), _random_conversations(15, seed=9))
