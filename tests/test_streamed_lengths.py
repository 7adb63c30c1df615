"""The exact length count reads one plain file while it tokenizes (core.data.DatasetStream): the same
report, progress and errors as reading the whole file first (load_dataset), over several chunks."""

from __future__ import annotations

import gc
import json

import pytest

import core.data
import core.lengths
import core.template
from core.data import DatasetStream, load_dataset
from core.dataset_info import load_datasets
from core.errors import UserInputError
from core.lengths import analyze_file
from core.models import ModelSource, load_tokenizer
from core.template import ChatEncoder
from tests.conftest import write_jsonl
from tests.test_lf_data import glaive_records, plain_chat
from tests.test_quick_lengths import varied_records


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Several chunks on small files, and read chunks that do not line up with tokenizer chunks."""
    monkeypatch.setattr(core.data, "READ_CHUNK", 3)
    monkeypatch.setattr(core.template, "ENCODE_CHUNK", 4)
    monkeypatch.setattr(core.lengths, "PROGRESS_CHUNK", 4)


def _analyzed(path, monkeypatch, streamed: bool, **options):
    """(report dict, progress calls) or (None, the error's text), streamed or the whole file read first."""
    calls = []
    with monkeypatch.context() as patch:
        if not streamed:
            patch.setattr(core.lengths, "dataset_conversations", lambda *a: load_datasets(*a).conversations)
        try:
            report = analyze_file(path, progress=lambda done, total: calls.append((done, total)), **options)
        except UserInputError as err:
            return None, str(err)
    return report.to_dict(), calls


def _same_both_ways(path, monkeypatch, **options):
    streamed = _analyzed(path, monkeypatch, True, **options)
    assert streamed == _analyzed(path, monkeypatch, False, **options)
    return streamed


def _sharegpt(record: dict) -> dict:
    names = {"user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in record["messages"]]}


@pytest.mark.parametrize("enabled", [True, False])
def test_streamed_report_and_progress_equal_reading_first(tmp_path, tiny_model_dir, monkeypatch, enabled):
    jsonl = write_jsonl(tmp_path / "chats.jsonl", varied_records(23))
    (tmp_path / "chats.json").write_text(json.dumps([_sharegpt(r) for r in varied_records(17, seed=2)]), "utf-8")
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        for path, options in [
            (jsonl, {}),
            (jsonl, {"system_prompt": "Be brief.", "train_on_prompt": True, "batch_size": 3}),
            (tmp_path / "chats.json", {"cutoff_len": 64, "dataset_format": "sharegpt"}),
        ]:
            report, calls = _same_both_ways(path, monkeypatch, model=str(tiny_model_dir), **options)
            assert report["mode"] == "exact" and report["examples"] == calls[-1][0] == calls[-1][1]
            assert len(calls) > 2  # progress after several chunks, the count of records known from the start
            assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_records_are_read_while_earlier_ones_are_counted(tmp_path, tiny_model_dir, monkeypatch):
    path = write_jsonl(tmp_path / "chats.jsonl", varied_records(40))
    read, seen_at_progress = [], []
    normalise = core.data.normalise
    monkeypatch.setattr(core.data, "normalise", lambda r, f, where, p: read.append(where) or normalise(r, f, where, p))
    report = analyze_file(
        path, model=str(tiny_model_dir), progress=lambda done, total: seen_at_progress.append(len(read))
    )
    assert report.examples == 40 and len(read) == 40
    assert seen_at_progress[0] < 40  # the first counts came before the file's last records were read


def test_a_bad_record_in_a_later_chunk_gives_the_loaders_message(tmp_path, tiny_model_dir, monkeypatch):
    records = varied_records(20)
    records[13] = {"messages": [{"role": "user", "content": "no reply"}]}
    records[17] = {"messages": [{"role": "assistant", "content": "no question"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(UserInputError) as loaded:
        load_dataset(path)
    _, message = _same_both_ways(path, monkeypatch, model=str(tiny_model_dir))
    assert message == str(loaded.value) and "line 14" in message and "line 18" in message
    # A line that is not JSON, however late, is what both report, as load_dataset does.
    path.write_text(path.read_text("utf-8") + "{not json\n", "utf-8")
    with pytest.raises(UserInputError) as loaded:
        load_dataset(path)
    _, message = _same_both_ways(path, monkeypatch, model=str(tiny_model_dir))
    assert message == str(loaded.value) and "line 21: not valid JSON" in message and "line 14" not in message


def test_the_format_comes_from_the_first_record_that_has_one(tmp_path, tiny_model_dir, monkeypatch):
    good = varied_records(10)
    records = ["not an object", {"question": "hi"}, {"question": "again"}, {"note": 1}, *good]  # chunks of 3
    path = write_jsonl(tmp_path / "late.jsonl", records)
    stream = DatasetStream(path)
    assert stream.format == "openai" and len(stream) == 14
    with pytest.raises(UserInputError) as loaded:
        load_dataset(path)
    _, message = _same_both_ways(path, monkeypatch, model=str(tiny_model_dir))
    assert message == str(loaded.value) and message.startswith("late.jsonl (openai format): 4 problem(s):")
    # Lines that are not JSON before the first record with a format: still found, still reported first.
    path.write_text("{broken\n" * 4 + "".join(json.dumps(r) + "\n" for r in good), "utf-8")
    with pytest.raises(UserInputError) as loaded:
        load_dataset(path)
    assert str(loaded.value).startswith("late.jsonl: 4 line(s) are not JSON:")
    assert _same_both_ways(path, monkeypatch, model=str(tiny_model_dir))[1] == str(loaded.value)
    # No record with a format at all: the loader's message, naming the first record.
    write_jsonl(path, [{"question": "hi"}] * 7)
    _, message = _same_both_ways(path, monkeypatch, model=str(tiny_model_dir))
    assert message.startswith("late.jsonl: cannot tell the format.") and message.endswith("in line 1")


def test_tool_records_are_refused_with_every_number_after_the_data_checks(tmp_path, tiny_model_dir, monkeypatch):
    plain, tool_chat = plain_chat("Hi", "Hello!"), glaive_records()[2]
    records = [plain] * 14
    for index in (1, 6, 12):  # examples 2, 7 and 13: in three different chunks
        records[index] = tool_chat
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(records), "utf-8")
    _, message = _same_both_ways(path, monkeypatch, model=str(tiny_model_dir))
    assert message.startswith("3 example(s) (2, 7, 13, counted from 1 in dataset order) define or call tools")
    # A bad record after them: the dataset's problems come first, as when it was read whole.
    records.append({"conversations": []})
    path.write_text(json.dumps(records), "utf-8")
    _, message = _same_both_ways(path, monkeypatch, model=str(tiny_model_dir))
    assert (
        message
        == "tools.json (sharegpt format): 1 problem(s):\n  - record 15: field 'conversations' must be a non-empty list of turns"
    )


def test_refusals_wait_for_the_end_of_the_conversations(tiny_model_dir):
    tokenizer = load_tokenizer(ModelSource(str(tiny_model_dir)))
    tokenizer.chat_template = (
        "{% for m in messages %}{% if 'forbidden' in m.content %}{{ raise_exception('not here') }}{% endif %}"
        "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    )
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    refused = [{"role": "user", "content": "forbidden"}, {"role": "assistant", "content": "a"}]
    tools = [{"role": "user", "content": "q", "tools": [{"type": "function", "function": {"name": "f"}}]}, chat[1]]

    def conversations(*items, end: Exception | None = None):
        yield from items
        if end is not None:
            raise end

    encoder = ChatEncoder(tokenizer)
    with pytest.raises(UserInputError, match="^Example 6 .* refuses it: not here"):
        list(encoder.encode_chunks(conversations(*[chat] * 5, refused, *[chat] * 5)))
    with pytest.raises(UserInputError, match=r"^1 example\(s\) \(11, counted from 1"):  # tools before the template
        list(encoder.encode_chunks(conversations(*[chat] * 5, refused, *[chat] * 4, tools)))
    with pytest.raises(UserInputError, match="^the data's own problem$"):
        list(
            encoder.encode_chunks(
                conversations(*[chat] * 5, refused, tools, end=UserInputError("the data's own problem"))
            )
        )


def test_a_stream_is_read_once(tmp_path):
    stream = DatasetStream(write_jsonl(tmp_path / "chats.jsonl", varied_records(5)))
    assert len(list(stream)) == 5
    with pytest.raises(RuntimeError, match="read once"):
        iter(stream)


def test_a_registered_file_with_a_late_line_that_is_not_json_reports_that_line(tmp_path):
    # Its records up to that line were read (and renamed) before it: what they lack is not the news.
    lines = "".join(json.dumps(_sharegpt(r)) + "\n" for r in varied_records(8)) + "{not json\n"
    (tmp_path / "chats.jsonl").write_text(lines, "utf-8")
    entry = {"file_name": "chats.jsonl", "formatting": "sharegpt", "columns": {"messages": "conv"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps({"chats": entry}), "utf-8")
    with pytest.raises(UserInputError) as caught:
        load_datasets("chats", dataset_dir=str(tmp_path))
    assert str(caught.value) == (
        "Dataset 'chats' (sharegpt; columns messages=conv): chats.jsonl: 1 line(s) are not JSON:\n"
        "  - line 9: not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    )
