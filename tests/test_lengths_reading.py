"""Reading datasets fast for the length analysis: the plain-turn shortcut reads every turn exactly as
the full checks do, and pausing the garbage collector leaves it as it was."""

from __future__ import annotations

import gc

import pytest

from core.data import load_dataset
from core.errors import UserInputError
from tests.conftest import write_jsonl

# Two-key turns, good and bad: roles as given (case, spaces, unknown) and contents of every type.
ROLES = ["user", "User", " assistant ", "system", "tool", "bot", 7, None]
CONTENTS = ["hi", "  ", "", "\u3000", "\x1c", "\u2028 x", None, 5, [{"type": "text", "text": "parts"}]]
SHAREGPT = [
    {"from": "human", "value": "q"},
    {"from": "function_call", "value": '{"name": "f", "arguments": {"x": 1}}'},
    {"from": "observation", "value": "r"},
    {"from": "gpt", "value": "a"},
]


def _read(tmp_path, name: str, records: list, fmt: str):
    """(conversations, None) or (None, the error's text) for `records` written as a .jsonl file
    (in a folder `name`)."""
    (tmp_path / name).mkdir()
    path = write_jsonl(tmp_path / name / "data.jsonl", records)  # one file name: the errors name it
    try:
        return load_dataset(path, fmt).conversations, None
    except UserInputError as err:
        return None, str(err)


def _with_extra_key(records: list, key: str) -> list:
    """The same records with one more key in every turn: a key the reader ignores, so every turn
    takes the full checks instead of the shortcut."""
    return [{**r, key: [{**turn, "extra": 1} for turn in r[key]]} for r in records]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("content", CONTENTS)
def test_plain_turn_shortcut_reads_as_the_full_checks(tmp_path, role, content):
    records = [{"messages": [{"role": role, "content": content}, {"role": "assistant", "content": "a"}]}]
    got = _read(tmp_path, "plain", records, "openai")
    want = _read(tmp_path, "checked", _with_extra_key(records, "messages"), "openai")
    assert got == want
    assert got[0] is not None or got[1]  # read, or refused with a message


def test_sharegpt_roles_and_tool_turns_read_as_the_full_checks(tmp_path):
    records = [{"conversations": SHAREGPT}, {"conversations": [{"from": "HUMAN", "value": "q"}, SHAREGPT[3]]}]
    got = _read(tmp_path, "plain", records, "sharegpt")
    assert got == _read(tmp_path, "checked", _with_extra_key(records, "conversations"), "sharegpt")
    conversations, _ = got
    assert conversations[0][1]["tool_calls"][0]["function"] == {"name": "f", "arguments": {"x": 1}}
    assert [m["role"] for m in conversations[1]] == ["user", "assistant"]


@pytest.mark.parametrize("enabled", [True, False])
def test_garbage_collector_left_as_it_was(tmp_path, enabled):
    good = write_jsonl(tmp_path / "good.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with pytest.raises(UserInputError, match="last turn must be an assistant reply"):
            load_dataset(good)  # refused inside the paused stretch
        assert gc.isenabled() is enabled
        good = write_jsonl(
            good, [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
        )
        assert len(load_dataset(good).conversations) == 1
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
