"""dataset_info.json: registered names resolve to files, columns and tags rename, bad registries say why."""

import json

import pytest

from core.config import TrainConfig
from core.dataset_info import load_datasets, load_run_dataset, registered_names, resolve
from core.errors import UserInputError
from core.lengths import main as lengths_main
from core.runs import check_inputs
from tests.conftest import qa_records, write_jsonl
from tests.lf_fixtures import CHAT, IDENTITY, REGISTRY, write_lf_data


@pytest.fixture
def data(tmp_path):
    return write_lf_data(tmp_path / "data")


def _error(call) -> str:
    with pytest.raises(UserInputError) as err:
        call()
    return str(err.value)


def test_alpaca_entry_reads_as_llamafactory_does(data):
    dataset = load_datasets("identity", dataset_dir=str(data))
    assert dataset.format == "alpaca" and len(dataset.conversations) == len(IDENTITY)
    assert dataset.conversations[0] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": IDENTITY[0]["output"]},
    ]
    # LLaMA-Factory joins instruction and input with one newline.
    assert dataset.conversations[2][0] == {"role": "user", "content": "Translate this sentence.\nBonjour"}


def test_sharegpt_entry_renames_columns_and_tags(data):
    dataset = load_datasets("chat_demo", dataset_dir=str(data))
    assert dataset.format == "sharegpt"
    assert dataset.conversations[1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the code 1?"},
        {"role": "assistant", "content": "The code is 11."},
    ]


def test_tool_call_roles_reach_the_normaliser_in_sharegpt_form(data):
    [conversation] = load_datasets("toolcall_demo", dataset_dir=str(data)).conversations
    assert [m["role"] for m in conversation] == ["user", "assistant", "tool", "assistant"]
    assert conversation[1]["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 2, "b": 3}}
    assert conversation[0]["tools"][0]["function"]["name"] == "add"


def test_several_datasets_are_concatenated_in_order_and_cut_by_max_samples(data):
    both = load_datasets("identity, chat_demo", dataset_dir=str(data))
    assert len(both.conversations) == len(IDENTITY) + len(CHAT) and both.format == "alpaca+sharegpt"
    assert both.conversations[: len(IDENTITY)] == load_datasets("identity", dataset_dir=str(data)).conversations
    cut = load_datasets("identity,chat_demo", dataset_dir=str(data), max_samples=2)
    assert len(cut.conversations) == 4 and cut.conversations[2][1]["content"] == "What is the code 0?"


def test_num_samples_draws_by_seed_and_repeats_beyond_the_file(tmp_path):
    registry = {"all": {"file_name": "identity.json"}, "seven": {"file_name": "identity.json", "num_samples": 7}}
    data = write_lf_data(tmp_path / "data", registry)
    whole = load_datasets("all", dataset_dir=str(data)).conversations
    seven = load_datasets("seven", dataset_dir=str(data), seed=3).conversations
    assert len(seven) == 7 and seven[:6] == whole * 2 and seven[6] in whole
    assert seven == load_datasets("seven", dataset_dir=str(data), seed=3).conversations


def test_a_file_path_stays_a_file_beside_registered_names(data, tmp_path):
    plain = write_jsonl(tmp_path / "qa.jsonl", qa_records(3))
    mixed = load_datasets(f"identity,{plain}", dataset_dir=str(data))
    assert len(mixed.conversations) == len(IDENTITY) + 3
    assert load_datasets(str(plain)).conversations == load_datasets(str(plain), dataset_dir=str(data)).conversations


def test_run_dataset_and_pre_start_check_use_the_registry(data, tiny_model_dir):
    config = TrainConfig(dataset="identity,chat_demo", dataset_dir=str(data), model_name_or_path=str(tiny_model_dir))
    assert len(load_run_dataset(config).conversations) == len(IDENTITY) + len(CHAT)
    check_inputs(config)  # no error
    config.dataset = "identity,persona"
    message = _error(lambda: check_inputs(config))
    assert "'persona' is not registered" in message and "registered: identity, chat_demo, toolcall_demo" in message


def test_unknown_name_lists_the_registered_ones(data):
    message = _error(lambda: resolve("identiy", str(data)))
    assert "Dataset 'identiy' is not registered" in message and "did you mean 'identity'" in message
    assert "identity, chat_demo, toolcall_demo, hub_only" in message


def test_missing_file_hub_only_and_no_registry(data, tmp_path):
    (data / "identity.json").unlink()
    message = _error(lambda: resolve("identity", str(data)))
    assert "Dataset 'identity'" in message and "file_name 'identity.json' not found" in message
    message = _error(lambda: resolve("hub_only", str(data)))
    assert "'hub_only'" in message and "hf_hub_url 'someone/some-dataset'" in message and "offline" in message
    message = _error(lambda: resolve("persona", str(tmp_path)))
    assert "'persona' is a name" in message and "no dataset_info.json" in message
    message = _error(lambda: resolve("persona", ""))
    assert "Dataset file not found" in message and "needs dataset_dir" in message


def test_malformed_registry_names_line_and_column(tmp_path):
    data = write_lf_data(tmp_path / "data")
    (data / "dataset_info.json").write_text('{\n  "identity": {"file_name": "identity.json",}\n}', encoding="utf-8")
    message = _error(lambda: registered_names(data))
    assert "dataset_info.json is not valid JSON" in message and "line 2, column" in message
    (data / "dataset_info.json").write_text('["identity"]', encoding="utf-8")
    assert "must hold an object of dataset name -> entry, got a list" in _error(lambda: registered_names(data))


def test_wrong_entry_shapes_are_listed_with_the_entry_name(tmp_path):
    registry = {
        "bad": {
            "file_name": "identity.json",
            "formatting": "xml",
            "columns": {"prompt": 3, "images": "pics", "answer": "x"},
            "tags": ["from"],
            "ranking": True,
        },
        "notobj": "identity.json",
    }
    data = write_lf_data(tmp_path / "data", registry)
    message = _error(lambda: resolve("bad", str(data)))
    for part in (
        "Dataset 'bad'",
        "formatting must be one of alpaca, sharegpt, openai",
        "columns.prompt must name",
        "columns.images: images cannot be trained",
        "columns.answer is not a column of alpaca entries",
        "tags must be an object",
        "ranking: true",
    ):
        assert part in message, part
    assert "Dataset 'notobj'" in _error(lambda: resolve("notobj", str(data)))


def test_a_column_no_record_has_is_named_and_nothing_loads(tmp_path):
    registry = dict(REGISTRY, identity={"file_name": "identity.json", "columns": {"prompt": "question"}})
    data = write_lf_data(tmp_path / "data", registry)
    message = _error(lambda: load_datasets("chat_demo,identity", dataset_dir=str(data)))
    assert "nothing is trained on part of it" in message
    assert "Dataset 'identity'" in message and "columns.prompt names field 'question', which no record has" in message


def test_record_problems_come_from_the_one_normaliser_with_entry_and_record(tmp_path):
    data = write_lf_data(tmp_path / "data")
    records = json.loads((data / "identity.json").read_text(encoding="utf-8"))
    records[1]["output"] = ""
    (data / "identity.json").write_text(json.dumps(records), encoding="utf-8")
    message = _error(lambda: load_datasets("identity", dataset_dir=str(data)))
    assert "Dataset 'identity' (alpaca)" in message and "record 2: field 'output' is missing or empty" in message


def test_length_analyzer_cli_reads_registered_names(data, capsys):
    assert lengths_main(["identity,chat_demo", "--dataset-dir", str(data), "--model", "tiktoken", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == len(IDENTITY) + len(CHAT)


# ------------------------------------------------------------------------------------- the page
def test_data_tab_lists_registered_datasets_and_previews_the_chosen_ones(data):
    from webui.tabs import data as data_tab
    from webui.tabs import data_registry

    out = data_registry.list_registered(str(data), "identity", "en")
    assert out["registered"]["choices"] == list(REGISTRY) and out["registered"]["value"] == ["identity"]
    assert out["registered"]["visible"] is True and out["registry_problems"] == ""
    assert data_registry.choose_registered(["identity", "chat_demo"]) == {"dataset": "identity,chat_demo"}
    preview = data_tab.load_preview("identity,chat_demo", "auto", "en", dataset_dir=str(data))
    assert preview["data_problems"] == "" and f"{len(IDENTITY) + len(CHAT)} conversations" in preview["data_summary"]
    assert data_tab.count_examples("identity,chat_demo", "auto", str(data)) == len(IDENTITY) + len(CHAT)
    assert data_registry.list_registered("", "x.jsonl", "en")["registered"]["visible"] is False


def test_data_tab_shows_a_malformed_registry_as_an_error(data):
    from webui.tabs import data_registry

    (data / "dataset_info.json").write_text('{"identity": {"file_name": }}', encoding="utf-8")
    out = data_registry.list_registered(str(data), "identity", "en")
    assert out["registered"]["visible"] is False
    assert "dataset_info.json cannot be read" in out["registry_problems"]
    assert "not valid JSON (Expecting value at line 1, column 28)" in out["registry_problems"]


def test_train_preview_shows_the_llamafactory_yaml_of_the_same_run(data, tiny_model_dir, tmp_path):
    from types import SimpleNamespace

    import yaml

    from core.config import config_from_dict
    from tests.webui_helpers import form
    from webui.tabs import train

    ctx = SimpleNamespace(runs_dir=tmp_path / "runs")  # form_config reads only the runs folder
    values = form(tiny_model_dir, "identity,chat_demo", "lf-run", dataset_dir=str(data))
    out = train.preview_config(ctx, lang="en", **values)
    assert out["train_error"] == "" and out["config_lf_yaml"]["visible"] is True
    ours = config_from_dict(yaml.safe_load(out["config_yaml"]["value"]))
    theirs = yaml.safe_load(out["config_lf_yaml"]["value"])
    assert theirs["stage"] == "sft" and theirs["dataset"] == "identity,chat_demo"
    assert config_from_dict(theirs) == ours and ours.dataset_dir == str(data)
    plan = train.plan_view(ctx, lang="en", **values)
    assert plan["form_ok"] is True and f"{len(IDENTITY) + len(CHAT)} examples" in plan["plan"].replace("**", "")
