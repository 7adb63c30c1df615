"""identity.json-style placeholders: found, filled into a copy (never over the original), and the
Data tab's panel that offers it."""

from __future__ import annotations

import json

import pytest

from core.data import load_dataset
from core.errors import UserInputError
from core.placeholders import fill_placeholders, filled_path, find_placeholders
from tests.conftest import write_jsonl
from webui.context import AppContext
from webui.tabs import data as data_tab

IDENTITY = [  # shaped like LLaMA-Factory's data/identity.json
    {"instruction": "hi", "input": "", "output": "Hello! I am {{name}}, an AI assistant developed by {{author}}."},
    {"instruction": "Who are you?", "input": "", "output": "I am {{name}}, an AI assistant developed by {{author}}."},
    {"instruction": "What is your name?", "input": "", "output": "You may refer to me as {{ name }}."},
]


@pytest.fixture
def identity(tmp_path):
    path = tmp_path / "identity.json"
    path.write_text(json.dumps(IDENTITY, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def test_found_and_filled_into_a_copy(identity):
    original = identity.read_bytes()
    assert find_placeholders(identity) == {"name": 3, "author": 2}
    out = fill_placeholders(identity, {"name": "Tailor", "author": 'Acme "Shoes" & Co'})
    assert out == filled_path(identity) == identity.with_name("identity.filled.json")
    assert identity.read_bytes() == original
    outputs = [c[-1]["content"] for c in load_dataset(out).conversations]
    assert outputs == [
        'Hello! I am Tailor, an AI assistant developed by Acme "Shoes" & Co.',
        'I am Tailor, an AI assistant developed by Acme "Shoes" & Co.',
        "You may refer to me as Tailor.",
    ]
    assert find_placeholders(out) == {}
    assert list(identity.parent.glob(".*")) == []  # no temporary file left behind


def test_v1_jsonl_parts_are_filled_line_by_line(tmp_path):
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "value": "hi"}], "loss_weight": 0.0},
            {"role": "assistant", "content": [{"type": "text", "value": "I am {{name}}."}], "loss_weight": 1.0},
        ]
    }
    path = write_jsonl(tmp_path / "v1_sft_demo.jsonl", [record, record])
    out = fill_placeholders(path, {"name": "小裁缝"})
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["messages"][1]["content"][0]["value"] == "I am 小裁缝."
    assert json.loads(lines[0])["messages"][0]["loss_weight"] == 0.0  # everything else as it was


def test_refusals(identity, tmp_path):
    with pytest.raises(UserInputError, match=r"missing: \{\{author\}\}"):
        fill_placeholders(identity, {"name": "Tailor", "author": "  "})
    with pytest.raises(UserInputError, match="must not overwrite the original"):
        fill_placeholders(identity, {"name": "a", "author": "b"}, out=identity)
    with pytest.raises(UserInputError, match="Filled copy .* cannot be used"):
        fill_placeholders(identity, {"name": "a", "author": "b"}, out=tmp_path / "missing" / "x.json")
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"instruction": "q", "output": "a"}])
    with pytest.raises(UserInputError, match="holds no"):
        fill_placeholders(plain, {"name": "a"})
    assert not filled_path(identity).exists()


def test_the_data_tab_offers_to_fill_and_selects_the_copy(identity, tmp_path):
    ctx = AppContext.create(tmp_path / "runs", page=None)
    panel = data_tab.placeholder_panel(str(identity), "", "en")
    assert panel["ph_panel"]["visible"] and panel["ph_name"]["visible"] and panel["ph_author"]["visible"]
    assert not panel["ph_other"]["visible"] and "`{{name}}` ×3" in panel["ph_found"]

    missing = data_tab.fill_placeholders(ctx, str(identity), "", "Tailor", "", "", "en")
    assert "missing: {{author}}" in missing["ph_msg"] and "dataset" not in missing

    updates = data_tab.fill_placeholders(ctx, str(identity), "", "Tailor", "Acme", "", "en")
    copy = identity.with_name("identity.filled.json")
    assert updates["dataset"]["value"] == str(copy) and copy.is_file()
    assert data_tab.placeholder_panel(str(copy), "", "en")["ph_panel"]["visible"] is False

    other = write_jsonl(tmp_path / "other.jsonl", [{"instruction": "Where?", "output": "At {{city}}, by {{name}}."}])
    panel = data_tab.placeholder_panel(str(other), "", "en")
    assert panel["ph_other"]["visible"] and not panel["ph_author"]["visible"]
    updates = data_tab.fill_placeholders(ctx, str(other), "", "Tailor", "", "{{city}} = Lyon", "en")
    assert load_dataset(updates["dataset"]["value"]).conversations[0][-1]["content"] == "At Lyon, by Tailor."


def test_a_registered_dataset_offers_its_placeholders_too(identity, tmp_path):
    """dataset: identity with dataset_dir: the panel reads the entry's file, the copy is a plain file."""
    (identity.parent / "dataset_info.json").write_text(json.dumps({"identity": {"file_name": identity.name}}))
    ctx = AppContext.create(tmp_path / "runs", page=None)
    assert data_tab.placeholder_panel("identity", str(identity.parent), "en")["ph_panel"]["visible"]
    updates = data_tab.fill_placeholders(ctx, "identity", str(identity.parent), "Tailor", "Acme", "", "en")
    assert updates["dataset"]["value"] == str(identity.with_name("identity.filled.json"))
    assert "{{" not in json.dumps(load_dataset(updates["dataset"]["value"]).conversations)
