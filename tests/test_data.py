"""Dataset reading: three formats normalised to one shape; every bad record named with its number."""

from __future__ import annotations

import json

import pytest

from core.data import load_dataset
from core.errors import UserInputError
from tests.conftest import write_jsonl

U, A, S = "user", "assistant", "system"


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def error_of(path, fmt: str = "auto") -> UserInputError:
    with pytest.raises(UserInputError) as info:
        load_dataset(path, fmt)
    return info.value


# ------------------------------------------------------------------------------- good files
def test_alpaca_with_system_input_and_history(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {
                "instruction": "Summarize",
                "input": "Long text.",
                "output": "Short.",
                "system": "Be terse.",
                "history": [["Hi", "Hello!"], ["Who are you?", "A bot."]],
            },
            {"instruction": "Say hi", "output": "Hi!"},
            {"instruction": "Say hi", "input": "   ", "output": "Hi!", "system": ""},
        ],
    )
    data = load_dataset(path)
    assert data.format == "alpaca" and data.path == str(path)
    assert data.conversations == [
        [
            msg(S, "Be terse."),
            msg(U, "Hi"),
            msg(A, "Hello!"),
            msg(U, "Who are you?"),
            msg(A, "A bot."),
            msg(U, "Summarize\n\nLong text."),
            msg(A, "Short."),
        ],
        [msg(U, "Say hi"), msg(A, "Hi!")],
        [msg(U, "Say hi"), msg(A, "Hi!")],  # blank input and system add nothing
    ]


def test_sharegpt_roles_and_system(tmp_path):
    path = tmp_path / "s.json"  # a .json list, not .jsonl
    path.write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "Hi"},
                        {"from": "gpt", "value": "Hello"},
                        {"from": "user", "value": "Bye"},
                        {"from": "assistant", "value": "Ciao"},
                    ],
                    "system": "Be nice.",
                },
                {
                    "conversations": [
                        {"from": "system", "value": "Sys"},
                        {"from": "Human", "value": "Q"},
                        {"from": "GPT", "value": "A"},
                    ]
                },
            ]
        ),
        encoding="utf-8",
    )
    data = load_dataset(path)
    assert data.format == "sharegpt"
    assert data.conversations == [
        [msg(S, "Be nice."), msg(U, "Hi"), msg(A, "Hello"), msg(U, "Bye"), msg(A, "Ciao")],
        [msg(S, "Sys"), msg(U, "Q"), msg(A, "A")],
    ]


def test_openai_messages_with_bom_crlf_blank_lines_and_unicode(tmp_path):
    records = [
        {"messages": [msg(S, "You help."), msg(U, "你好 🙂"), msg(A, "Hallo\u2028Welt\x85!")]},
        {"messages": [msg(U, "a"), msg(A, "b")]},
    ]
    # BOM, CRLF line ends, a blank line, and raw U+2028 / U+0085 inside strings (valid JSON that
    # str.splitlines() would cut in two; fixed: lines are split on "\n" only).
    text = "\ufeff" + json.dumps(records[0], ensure_ascii=False) + "\r\n\r\n" + json.dumps(records[1]) + "\r\n"
    path = tmp_path / "o.jsonl"
    path.write_bytes(text.encode("utf-8"))
    data = load_dataset(path)
    assert data.format == "openai"
    assert data.conversations == [records[0]["messages"], records[1]["messages"]]


def test_explicit_format_is_used(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "output": "y"}])
    assert load_dataset(path, "alpaca").conversations == [[msg(U, "x"), msg(A, "y")]]
    error = error_of(path, "openai")
    assert "line 1: field 'messages' must be a non-empty list of turns" in error.problems


# -------------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    assert str(error_of(tmp_path / "nope.jsonl")) == f"Dataset file not found: {tmp_path / 'nope.jsonl'}"


def test_wrong_extension(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n", encoding="utf-8")
    assert str(error_of(path)) == "data.csv: dataset must be a .json or .jsonl file, got '.csv'"


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.jsonl"
    good = b'{"instruction": "cafe", "output": "x"}\n'
    path.write_bytes(good + '{"instruction": "caf\u00e9", "output": "x"}\n'.encode("latin-1"))
    assert str(error_of(path)) == (
        f"latin.jsonl is not UTF-8 text (line 2: bad byte 0xe9 at offset {len(good) + 20}); save it as UTF-8"
    )


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    assert str(error_of(path)) == "empty.jsonl is empty: no examples to train on"


def test_empty_json_list(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("[]", encoding="utf-8")
    assert str(error_of(path)) == "empty.json holds no examples"


def test_jsonl_lines_that_are_not_json_are_named_by_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": [msg(U, "a"), msg(A, "b")]})
    path.write_text(f"{good}\n\n{{not json}}\n{good}\n{good[:-5]}\n", encoding="utf-8")
    error = error_of(path)
    assert error.title == "bad.jsonl: 2 line(s) are not JSON:"
    assert len(error.problems) == 2
    assert error.problems[0].startswith("line 3: not valid JSON (Expecting property name enclosed in double quotes")
    assert error.problems[1].startswith("line 5: not valid JSON")


def test_json_file_that_is_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"instruction": "a", "output": "b"},\n oops]', encoding="utf-8")
    assert str(error_of(path)).startswith("bad.json: not valid JSON (Expecting value at line 2, column 2)")


def test_unknown_format(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "a", "completion": "b"}, {"text": "c"}])
    message = str(error_of(path))
    assert message.startswith("x.jsonl: cannot tell the format.")
    assert "'messages' (OpenAI)" in message and "'conversations' (sharegpt)" in message
    assert "'instruction'/'output' (alpaca)" in message and message.endswith("in line 1")
    # An unknown explicit format is refused too (fixed: it was silently read as OpenAI messages).
    assert str(error_of(path, "chatml")) == "Unknown dataset format 'chatml': use one of auto, alpaca, sharegpt, openai"


def test_missing_and_empty_fields(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"instruction": "ok", "output": "ok"},
            {"instruction": "no output"},
            {"instruction": "  ", "output": "x"},
            {"instruction": "x", "output": 5},
            {"instruction": "x", "output": "y", "history": [["only one"]]},
            {"output": "no instruction"},
            "not an object",
        ],
    )
    error = error_of(path)
    assert error.title == "a.jsonl (alpaca format): 6 problem(s):"
    assert error.problems == [
        "line 2: field 'output' is missing or empty",
        "line 3: field 'instruction' is missing or empty",
        "line 4: field 'output' must be a string, got int",
        "line 5: history[1] must be a pair of non-empty strings [user, assistant]",
        "line 6: field 'instruction' is missing or empty",
        "line 7: each example must be a JSON object, got str",
    ]


def test_turn_problems_openai(tmp_path):
    path = write_jsonl(
        tmp_path / "o.jsonl",
        [
            {"messages": [msg(U, "a"), msg(A, "b")]},
            {"messages": [msg(U, "a"), msg(A, "  ")]},  # empty assistant reply
            {"messages": [msg(A, "b"), msg(U, "a")]},  # roles out of order
            {"messages": [msg(U, "a"), msg(U, "b"), msg(A, "c")]},  # two user turns
            {"messages": [msg(U, "a")]},  # nothing to train on
            {"messages": [msg(U, "a"), {"role": "bot", "content": "x"}]},  # unknown role
            {"messages": []},
            {"messages": [msg(U, ""), msg(A, "b")]},
            {"messages": [msg(U, "a"), msg(A, "b"), msg(S, "late system")]},
        ],
    )
    error = error_of(path)
    assert error.problems == [
        "line 2, messages[2]: empty assistant reply",
        "line 3: roles out of order: turn 1 is 'assistant', expected 'user' "
        "(system first, then user and assistant alternating)",
        "line 4: roles out of order: turn 2 is 'user', expected 'assistant' "
        "(system first, then user and assistant alternating)",
        "line 5: the last turn must be an assistant reply (nothing to train on)",
        "line 6, messages[2]: 'role' must be one of assistant, system, tool, user; got 'bot'",
        "line 7: field 'messages' must be a non-empty list of turns",
        "line 8, messages[1]: 'content' is missing or empty",
        "line 9: roles out of order: turn 3 is 'system', expected 'user' "
        "(system first, then user and assistant alternating)",
    ]


def test_turn_problems_sharegpt_in_json_list_use_record_numbers(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            [
                {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
                {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": ""}]},
                {"conversations": [{"from": "bot", "value": "a"}]},
                {"conversations": ["hi"]},
            ]
        ),
        encoding="utf-8",
    )
    error = error_of(path)
    assert error.title == "s.json (sharegpt format): 3 problem(s):"
    assert error.problems == [
        "record 2, conversations[2]: empty assistant reply",
        "record 3, conversations[1]: 'from' must be one of assistant, function_call, gpt, human, observation, "
        "system, user; got 'bot'",
        "record 4, conversations[1]: each turn must be an object with 'from' and 'value'",
    ]


def test_many_bad_records_are_listed_capped_with_the_total(tmp_path):
    records = [{"instruction": f"q{i}", "output": "" if i % 2 else "fine"} for i in range(1, 81)]
    path = write_jsonl(tmp_path / "many.jsonl", records)
    error = error_of(path)
    assert len(error.problems) == 40
    lines = str(error).splitlines()
    assert lines[0] == "many.jsonl (alpaca format): 40 problem(s):"
    assert lines[1] == "  - line 1: field 'output' is missing or empty"
    assert lines[20] == "  - line 39: field 'output' is missing or empty"
    assert lines[21] == "  ... and 20 more problem(s) (40 in all)"
    assert len(lines) == 22
