"""Label masking, token by token: only each assistant reply and its end-of-turn token are trained.

The expectation is computed independently of core.template: the tiny model's ChatML layout is
rebuilt piece by piece (`<|im_start|>role\\n`, content, `<|im_end|>`, `\\n`), each piece tokenized on
its own, and the content + `<|im_end|>` pieces of assistant turns marked as trained.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.data import load_dataset
from core.template import IGNORE_INDEX, ChatEncoder, truncate, with_system_prompt
from tests.conftest import write_jsonl
from tests.tiny import CHATML

TINY_DEFAULT_SYSTEM = "You are a tiny test model."  # what tests/tiny.py's template injects
END = "<|im_end|>"


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def expected_chatml(tokenizer, conversation, system_prompt: str = "") -> tuple[list[int], list[bool]]:
    """(input_ids, trained) built piece by piece, without core.template."""
    messages = list(conversation)
    if messages[0]["role"] != "system":
        messages.insert(0, msg("system", system_prompt or TINY_DEFAULT_SYSTEM))
    ids: list[int] = []
    trained: list[bool] = []
    for message in messages:
        is_reply = message["role"] == "assistant"
        for piece, train in (
            (f"<|im_start|>{message['role']}\n", False),
            (message["content"], is_reply),
            (END, is_reply),
            ("\n", False),
        ):
            piece_ids = ids_of(tokenizer, piece)
            ids += piece_ids
            trained += [train] * len(piece_ids)
    return ids, trained


def trained_runs(example) -> list[list[int]]:
    """The trained token ids, as one list per contiguous trained stretch."""
    runs, current = [], []
    for token, train in zip(example.input_ids.tolist(), example.trained.tolist()):
        if train:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def check_mask(tokenizer, conversation, system_prompt: str = "") -> None:
    encoder = ChatEncoder(tokenizer, system_prompt=system_prompt)
    [example] = encoder.encode([conversation])
    ids, trained = expected_chatml(tokenizer, conversation, system_prompt)
    assert example.input_ids.tolist() == ids
    assert example.trained.tolist() == trained
    replies = [m["content"] for m in conversation if m["role"] == "assistant"]
    decoded = [tokenizer.decode(run, skip_special_tokens=False) for run in trained_runs(example)]
    assert decoded == [reply + END for reply in replies]
    labels = example.labels()
    assert (labels[~example.trained] == IGNORE_INDEX).all()
    assert (labels[example.trained] == example.input_ids[example.trained]).all()


ALPACA = {
    "instruction": "Summarize the text.",
    "input": "Shipping is free over 50 euros.",
    "output": "Free shipping above 50.",
    "system": "You are a shop assistant.",
    "history": [["Hello!", "Hello! How can I help you today?"], ["Who are you?", " I am the shop bot."]],
}
SHAREGPT = {
    "conversations": [
        {"from": "human", "value": "What is the return policy?"},
        {"from": "gpt", "value": "You can return any item within 30 days."},
        {"from": "human", "value": "And shipping?"},
        {"from": "gpt", "value": "Shipping is free over 50 euros.\nWrite to help@example.com."},
        {"from": "human", "value": "Thanks"},
        {"from": "gpt", "value": "You are welcome!\n"},
    ]
}
OPENAI = {
    "messages": [
        msg("system", "Answer in one line."),
        msg("user", "Translate this sentence: 你好"),
        msg("assistant", "Hello 🙂 — 你好 means hello."),
        msg("user", "The answer?"),
        msg("assistant", "The answer is 42."),
    ]
}


@pytest.mark.parametrize("record", [ALPACA, SHAREGPT, OPENAI], ids=["alpaca", "sharegpt", "openai"])
def test_only_assistant_replies_and_end_of_turn_are_trained(tmp_path, tiny_tokenizer, record):
    path = write_jsonl(tmp_path / "one.jsonl", [record])
    [conversation] = load_dataset(path).conversations
    check_mask(tiny_tokenizer, conversation)


def test_alpaca_prompt_layout(tmp_path, tiny_tokenizer):
    """The user turn of an alpaca record is instruction + blank line + input; history comes first."""
    [conversation] = load_dataset(write_jsonl(tmp_path / "a.jsonl", [ALPACA])).conversations
    text = ChatEncoder(tiny_tokenizer).render(conversation)
    assert text == (
        "<|im_start|>system\nYou are a shop assistant.<|im_end|>\n"
        "<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help you today?<|im_end|>\n"
        "<|im_start|>user\nWho are you?<|im_end|>\n"
        "<|im_start|>assistant\n I am the shop bot.<|im_end|>\n"
        "<|im_start|>user\nSummarize the text.\n\nShipping is free over 50 euros.<|im_end|>\n"
        "<|im_start|>assistant\nFree shipping above 50.<|im_end|>\n"
    )


def test_many_conversations_in_one_batch_match_one_by_one(tiny_tokenizer):
    conversations = [[msg("user", f"Q{i}" * (i + 1)), msg("assistant", f"A{i} " * (i + 2))] for i in range(6)]
    encoder = ChatEncoder(tiny_tokenizer)
    batch = encoder.encode(conversations)
    for conversation, example in zip(conversations, batch):
        [alone] = encoder.encode([conversation])
        assert np.array_equal(alone.input_ids, example.input_ids)
        assert np.array_equal(alone.trained, example.trained)
        check_mask(tiny_tokenizer, conversation)


def test_an_earlier_padded_truncated_call_leaves_encoding_unchanged(tiny_tokenizer):
    """encode() drives the Rust backend itself, whose padding/truncation settings a plain tokenizer
    call (padding=True, truncation=True) leaves behind: they must not cut or pad the examples."""
    conversations = [OPENAI["messages"], [msg("user", "Q " * 30), msg("assistant", "A " * 40)]]
    encoder = ChatEncoder(tiny_tokenizer)
    before = encoder.encode(conversations)
    tiny_tokenizer(["a b c d e f g", "a"], padding=True, truncation=True, max_length=3)
    after = encoder.encode(conversations)
    for conversation, old, new in zip(conversations, before, after):
        assert new.input_ids.tolist() == old.input_ids.tolist() == expected_chatml(tiny_tokenizer, conversation)[0]
        assert np.array_equal(new.trained, old.trained)


def test_train_on_prompt_trains_every_token(tiny_tokenizer):
    [example] = ChatEncoder(tiny_tokenizer, train_on_prompt=True).encode([OPENAI["messages"]])
    assert example.trained.all()
    assert example.input_ids.tolist() == expected_chatml(tiny_tokenizer, OPENAI["messages"])[0]
    assert (example.labels() == example.input_ids).all()


def test_system_prompt_is_inserted_only_when_none_exists(tiny_tokenizer):
    without = [msg("user", "Hi"), msg("assistant", "Hello")]
    with_own = [msg("system", "Own system."), *without]
    encoder = ChatEncoder(tiny_tokenizer, system_prompt="Be brief.")
    text = tiny_tokenizer.decode(encoder.encode([without])[0].input_ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")
    assert TINY_DEFAULT_SYSTEM not in text
    text = tiny_tokenizer.decode(encoder.encode([with_own])[0].input_ids)
    assert text.startswith("<|im_start|>system\nOwn system.<|im_end|>\n") and "Be brief." not in text
    # the mask is still exactly the replies
    check_mask(tiny_tokenizer, without, system_prompt="Be brief.")
    check_mask(tiny_tokenizer, with_own, system_prompt="Be brief.")
    # the helper does the same for chat, and leaves the caller's list alone
    assert with_system_prompt(without, "S")[0] == msg("system", "S") and len(without) == 2
    assert with_system_prompt(with_own, "S") is with_own
    assert with_system_prompt(without, "  ") is without
    # and the chat prompt carries it, ending where the reply starts
    prompt = encoder.prompt_for_reply([msg("user", "Hi")])
    assert prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


LLAMA_LIKE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.mark.parametrize("template", [CHATML, LLAMA_LIKE], ids=["chatml", "uses-special-token-variables"])
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_render_equals_apply_chat_template(tiny_tokenizer, template, generation_prompt):
    tokenizer = tiny_tokenizer if template == CHATML else _with_template(tiny_tokenizer, template)
    encoder = ChatEncoder(tokenizer)
    for conversation in (OPENAI["messages"], SHAREGPT_AS_MESSAGES, [msg("user", "only a question")]):
        expected = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
        assert encoder.render(conversation, add_generation_prompt=generation_prompt) == expected


SHAREGPT_AS_MESSAGES = [msg("user", "a"), msg("assistant", "b"), msg("user", "c"), msg("assistant", "d")]


def _with_template(tokenizer, template):
    import copy

    clone = copy.deepcopy(tokenizer)
    clone.chat_template = template
    return clone


def test_other_layout_masks_reply_and_eos(tiny_tokenizer):
    """A template without a trailing newline after the end-of-turn token, using {{ eos_token }}."""
    tokenizer = _with_template(tiny_tokenizer, LLAMA_LIKE)
    conversation = SHAREGPT_AS_MESSAGES
    [example] = ChatEncoder(tokenizer).encode([conversation])
    decoded = [tokenizer.decode(run, skip_special_tokens=False) for run in trained_runs(example)]
    assert decoded == ["b" + END, "d" + END]


def test_reply_after_generation_prompt_ending_in_a_space_is_fully_trained(tiny_tokenizer):
    template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    tokenizer = _with_template(tiny_tokenizer, template)
    reply = "the answer is 42."  # ' the' is one token of the tiny vocabulary
    conversation = [msg("user", "Hello"), msg("assistant", reply)]
    encoder = ChatEncoder(tokenizer)
    text = encoder.render(conversation)
    [example] = encoder.encode([conversation])
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    reply_start = text.index(reply)
    covered = set()
    for (start, end), train in zip(offsets, example.trained.tolist()):
        if train:
            covered.update(range(start, end))
    assert set(range(reply_start, reply_start + len(reply))) <= covered


def test_truncate_keeps_the_beginning(tiny_tokenizer):
    [example] = ChatEncoder(tiny_tokenizer).encode([OPENAI["messages"]])
    cut = truncate(example, 10)
    assert cut.input_ids.tolist() == example.input_ids[:10].tolist()
    assert cut.trained.tolist() == example.trained[:10].tolist()
    assert truncate(example, 10_000).input_ids.tolist() == example.input_ids.tolist()


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(Exception, match="fast \\(Rust\\) tokenizer is needed"):
        ChatEncoder(Slow())
