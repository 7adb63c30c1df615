"""The Data tab's length panel driven as plain handlers: the quick numbers at once, the exact count in
the background with progress, polled until its report replaces them; a page's previous count stops."""

from __future__ import annotations

import threading

import pytest

import core.lengths
from core import length_jobs, quick_lengths
from tests.conftest import write_jsonl
from tests.test_quick_lengths import varied_records
from tests.webui_helpers import wait_for
from webui.tabs import data, data_lengths


@pytest.fixture
def gate(monkeypatch):
    """Exact counts wait for gate.set() before they start: the test sees them running."""
    event, real = threading.Event(), length_jobs.analyze_file
    monkeypatch.setattr(length_jobs, "analyze_file", lambda **options: event.wait(120) and real(**options))
    monkeypatch.setattr(quick_lengths, "QUICK_SAMPLE", 200)
    monkeypatch.setattr(core.lengths, "PROGRESS_CHUNK", 300)  # progress after each 300 conversations
    yield event
    event.set()


def settings(dataset, model, **overrides) -> dict:
    values = {
        "dataset": str(dataset),
        "dataset_format": "auto",
        "model_name_or_path": str(model),
        "cutoff_len": 64,
        "system_prompt": "",
        "train_on_prompt": False,
        "lang": "en",
        "dataset_dir": "",
        "length_job": "",
        **overrides,
    }
    assert set(values) == set(data_lengths.INPUTS)
    return values


def finished(key: str) -> dict | None:
    updates = data_lengths.poll(length_job=key, lang="en")
    return updates if "length_report" in updates else None


def test_quick_numbers_at_once_then_the_exact_report(tmp_path, tiny_model_dir, gate, dataset):
    path = write_jsonl(tmp_path / "big.jsonl", varied_records(1500))
    quick = data.analyze(**settings(path, tiny_model_dir))
    key = quick["length_job"]
    assert key and quick["length_timer"].active is True and quick["length_problems"] == ""
    assert "quick:" in quick["length_report"] and "95% interval" in quick["length_report"]
    assert isinstance(quick["suggested"], int) and "<svg" in quick["histogram"]
    assert "0 of 1,500" in quick["length_progress"]

    # While the count runs the page polls progress, and the other handlers answer.
    running = data_lengths.poll(length_job=key, lang="en")
    assert set(running) == {"length_progress"} and "Counting every conversation exactly" in running["length_progress"]
    assert data.load_preview(dataset=str(dataset), dataset_format="auto", lang="en")["data_problems"] == ""
    again = data.analyze(**settings(path, tiny_model_dir))  # a second browser attaches to the same count
    assert again["length_job"] == key

    gate.set()
    done = wait_for(lambda: finished(key), "the exact count")
    assert done["length_timer"].active is False and done["length_progress"] == ""
    assert "exact:" in done["length_report"] and "interval" not in done["length_report"]
    exact = core.lengths.analyze_file(path, model=str(tiny_model_dir), cutoff_len=64)
    assert done["suggested"] == exact.suggested_cutoff
    assert f"| {exact.summary['total']['p50']} |" in done["length_report"].replace(".0 |", " |")
    assert length_jobs.status(key).done == 1500


def test_a_new_dataset_stops_the_previous_count(tmp_path, tiny_model_dir, gate):
    first = write_jsonl(tmp_path / "first.jsonl", varied_records(1500, seed=4))
    second = write_jsonl(tmp_path / "second.jsonl", varied_records(1200, seed=5))
    old = data.analyze(**settings(first, tiny_model_dir))["length_job"]
    new = data.analyze(**settings(second, tiny_model_dir, length_job=old))["length_job"]
    assert new != old
    gate.set()
    wait_for(lambda: length_jobs.status(old) is None, "the cancelled count to go")
    assert data_lengths.poll(length_job=old, lang="en")["length_timer"].active is False
    assert "exact:" in wait_for(lambda: finished(new), "the new count")["length_report"]


def test_a_small_dataset_is_counted_whole_and_a_bad_one_says_why(tmp_path, tiny_model_dir, dataset):
    small = data.analyze(**settings(dataset, tiny_model_dir))
    assert small["length_job"] == "" and small["length_timer"].active is False and "exact:" in small["length_report"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [oops\n', encoding="utf-8")
    out = data.analyze(**settings(bad, tiny_model_dir))
    assert out["suggested"] is None and "line 1" in out["length_problems"] and out["length_job"] == ""
