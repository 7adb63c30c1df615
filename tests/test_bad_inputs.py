"""A corpus of bad inputs, each with the clear message it must get, and nothing left half-written.

Each table holds (input, expected substring). Every message must be short enough to read (a 5 MB
value is quoted cut), hold no traceback, and reach the user the way that entry point reports: the
CLI (`core.train.main`, in-process) returns 2 with an `error:` line, the engine raises
UserInputError, the page's handlers return an error box. A refused start writes nothing: no run
folder, no config.yaml, no worker.

Rows marked KNOWN_GAP fail today for a reason outside the files these tests guard; strict, so a fix
turns them into a failure that asks for the mark to go.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pytest
import yaml

from core.config import SPECS, TYPES, config_from_dict
from core.data import load_dataset
from core.errors import UserInputError
from core.runs import delete_run, run_path
from core.train import main
from tests.webui_helpers import DEADLINE_S, form
from webui.app import build_app
from webui.runner import Runner
from webui.tabs import train as train_tab

MAX_MESSAGE_CHARS = 300
HUGE = "x" * 5_000_000  # a 5 MB value pasted into a field
LONG_PATH = "/tmp/" + "d" * 5_000  # longer than any file system allows (ENAMETOOLONG)
NUL_PATH = "/tmp/da\x00ta.jsonl"  # a NUL byte: no file system takes it
NOT_FOUND = "Dataset file not found"


# ------------------------------------------------------------------------------------ the tables
def _config_cases() -> list:
    floats = [name for name, kind in TYPES.items() if kind is float]
    ints = [name for name, kind in TYPES.items() if kind is int]
    cases = [
        pytest.param({name: value}, f"{name} must be a finite number", id=f"{name}={value}")
        for name in floats
        for value in (math.nan, math.inf, -math.inf)
    ]
    cases += [pytest.param({name: 1e308}, f"{name} must be <=", id=f"{name}=1e308") for name in ints]
    cases += [
        pytest.param({name: value}, f"{name} must not be empty", id=f"{name}={value!r}")
        for name, spec in SPECS.items()
        if spec.non_empty
        for value in ("", "   ")
    ]
    cases += [
        pytest.param({name: "nope"}, f"{name} must be one of", id=f"{name}=nope")
        for name, spec in SPECS.items()
        if spec.choices
    ]
    return cases + [
        pytest.param(
            {"learning_rat": 1e-4}, "unknown key 'learning_rat' (did you mean 'learning_rate'?)", id="typo-key"
        ),
        pytest.param({"epochs": 3}, "unknown key 'epochs'", id="unknown-key"),
        pytest.param({"lora_rank": "abc"}, "lora_rank must be an int, got 'abc'", id="int=str"),
        pytest.param({"lora_rank": 2.5}, "lora_rank must be an int, got 2.5", id="int=2.5"),
        pytest.param({"learning_rate": "fast"}, "learning_rate must be a float, got 'fast'", id="float=str"),
        pytest.param({"per_device_train_batch_size": None}, "must be an int, got None", id="int=None"),
        pytest.param({"resume": "maybe"}, "resume must be a bool, got 'maybe'", id="bool=str"),
        pytest.param({"system_prompt": ["a"]}, "system_prompt must be a str, got ['a']", id="str=list"),
        pytest.param({"num_train_epochs": "lots"}, "num_train_epochs must be a float", id="epochs=str"),
        pytest.param({"learning_rate": [1]}, "learning_rate must be a float", id="float=list"),
        pytest.param({"lora_rank": {"a": 1}}, "lora_rank must be an int", id="int=dict"),
        pytest.param({"cutoff_len": -3}, "cutoff_len must be > 0, got -3", id="cutoff<0"),
        pytest.param({"val_size": 1.0}, "val_size must be in [0, 1), got 1", id="val_size=1"),
        pytest.param({"max_steps": 0}, "max_steps must be -1 (use epochs) or >= 1", id="max_steps=0"),
        pytest.param({"augment": "openai"}, "augment_base_url must be set when augment is openai", id="augment-needs"),
        pytest.param({"lr_scheduler_type": HUGE}, "lr_scheduler_type must be one of", id="choice=5MB"),
        pytest.param({"lora_rank": HUGE}, "lora_rank must be an int, got 'xxxx", id="int=5MB"),
        pytest.param({"learning_rate": HUGE}, "learning_rate must be a float", id="float=5MB"),
        pytest.param({"resume": HUGE}, "resume must be a bool", id="bool=5MB"),
    ]


# Valid configs whose files are not there or not usable: refused before a worker starts.
# "{tmp}" is the test's own folder.
START_CASES = [
    pytest.param({"dataset": "{tmp}/missing.jsonl"}, NOT_FOUND, id="dataset-missing"),
    pytest.param({"dataset": "{tmp}"}, "is a folder: give a .json or .jsonl file", id="dataset-folder"),
    pytest.param({"dataset": LONG_PATH}, "cannot be used: File name too long", id="dataset-5000-chars"),
    pytest.param({"dataset": NUL_PATH}, NOT_FOUND, id="dataset-NUL"),
    pytest.param({"dataset": HUGE}, "cannot be used: File name too long", id="dataset-5MB"),
    pytest.param(
        {"model_name_or_path": "/no/such/model"}, "Model folder not found: /no/such/model", id="model-missing"
    ),
    pytest.param({"model_name_or_path": "{tmp}"}, "has no config.json", id="model-folder-not-hf"),
    pytest.param({"model_name_or_path": "{tmp}/m.gguf"}, "GGUF file not found", id="gguf-missing"),
    pytest.param({"model_name_or_path": LONG_PATH}, "cannot be used: File name too long", id="model-5000-chars"),
    pytest.param({"model_name_or_path": "/tmp/mo\x00del"}, "Model folder not found", id="model-NUL"),
    pytest.param(
        {"dataset": "{tmp}/missing.jsonl", "model_name_or_path": "/no/such/model"},
        "Cannot start the run:\n  - Dataset file not found",
        id="both-missing",
    ),
    pytest.param({"output_dir": LONG_PATH}, "Run folder /tmp/ddd", id="output-5000-chars"),
    pytest.param({"output_dir": "/tmp/ru\x00n"}, "cannot be used: embedded null byte", id="output-NUL"),
    pytest.param({"output_dir": "{tmp}/data.jsonl"}, "cannot be used", id="output-is-a-file"),
]

DATASET_CASES = [  # (file name, its bytes, or None for a folder; expected)
    pytest.param("missing.jsonl", ..., NOT_FOUND, id="missing"),
    pytest.param("folder.jsonl", None, NOT_FOUND, id="a-folder"),
    pytest.param(
        "latin1.jsonl",
        '{"messages": "caf\xe9"}\n'.encode("latin-1"),
        "is not UTF-8 text (line 1: bad byte 0xe9",
        id="not-utf8",
    ),
    pytest.param("broken.jsonl", b'{"messages": [oops\n', "line 1: not valid JSON", id="bad-json-line"),
    pytest.param("empty.jsonl", b"\n\n", "is empty: no examples to train on", id="empty"),
    pytest.param("data.txt", b"hi", "dataset must be a .json or .jsonl file, got '.txt'", id="wrong-suffix"),
    pytest.param("foo.jsonl", b'{"foo": 1}\n', "cannot tell the format", id="unknown-schema"),
    pytest.param(
        "bot.jsonl",
        b'{"messages": [{"role": "bot", "content": "x"}]}\n',
        "line 1, messages[1]: 'role' must be one of assistant, system, tool, user; got 'bot'",
        id="bad-role",
    ),
    pytest.param(
        "noreply.jsonl",
        b'{"messages": [{"role": "user", "content": "x"}]}\n',
        "the last turn must be an assistant reply",
        id="no-reply",
    ),
    pytest.param(
        "alpaca.json",
        b'[{"instruction": 3, "output": "x"}]',
        "record 1: field 'instruction' must be a string, got int",
        id="alpaca-wrong-type",
    ),
]

CONFIG_FILE_CASES = [  # (the CLI's CONFIG.yaml argument: a path, or the text of a file; expected)
    pytest.param(LONG_PATH, "Config file /tmp/ddd", id="5000-chars"),
    pytest.param("/tmp/con\x00fig.yaml", "Config file not found", id="NUL"),
    pytest.param("{tmp}", "Config file not found", id="a-folder"),
    pytest.param("text:- a\n- b\n", "must hold a mapping of key: value, got a list", id="a-list"),
    pytest.param("text:key: [unclosed\n", "is not valid YAML", id="bad-yaml"),
]

RUN_NAME_CASES = [
    pytest.param("uploads", "keeps its 'uploads' folder for itself", id="uploads"),
    pytest.param("Uploads", "keeps its 'uploads' folder for itself", id="Uploads"),
    pytest.param("../x", "is not allowed", id="traversal"),
    pytest.param("a/b", "is not allowed", id="two-components"),
    pytest.param("", "is not allowed", id="empty"),
    pytest.param("a" * 200, "is not allowed", id="200-chars"),
    pytest.param("a\x00b", "is not allowed", id="NUL"),
    pytest.param(".hidden", "is not allowed", id="dot-first"),
]

PAGE_CASES = [  # what the train tab's Start sends: form values by name, wrong types included
    pytest.param({"learning_rate": "abc"}, "learning_rate must be a float, got 'abc'", id="lr=abc"),
    pytest.param({"learning_rate": math.nan}, "learning_rate must be a finite number, got nan", id="lr=nan"),
    pytest.param(
        {"per_device_train_batch_size": None}, "per_device_train_batch_size must be an int, got None", id="batch=None"
    ),
    pytest.param({"cutoff_len": "12x"}, "cutoff_len must be an int, got '12x'", id="cutoff=12x"),
    pytest.param({"lora_rank": -1}, "lora_rank must be > 0, got -1", id="rank=-1"),
    pytest.param({"lr_scheduler_type": None}, "lr_scheduler_type must be one of", id="scheduler=None"),
    pytest.param({"num_train_epochs": "lots"}, "num_train_epochs must be a float", id="epochs=lots"),
    pytest.param({"run_name": "uploads"}, "keeps its 'uploads' folder for itself", id="run=uploads"),
    pytest.param({"run_name": "../x"}, "is not allowed", id="run=traversal"),
    pytest.param(
        {"dataset": "/no/such/data.jsonl"}, "Dataset file not found: /no/such/data.jsonl", id="dataset-missing"
    ),
    pytest.param({"model_name_or_path": "/no/such/model"}, "Model folder not found", id="model-missing"),
    pytest.param({"dataset": LONG_PATH}, "cannot be used: File name too long", id="dataset-5000-chars"),
    pytest.param(
        {"dataset": LONG_PATH[len("/tmp/") :]}, "cannot be used: File name too long", id="relative-dataset-5000-chars"
    ),
]


# --------------------------------------------------------------------------------------- helpers
def in_tmp(value, tmp: Path):
    return value.replace("{tmp}", str(tmp)) if isinstance(value, str) else value


def filled(values: dict, tmp: Path) -> dict:
    return {key: in_tmp(value, tmp) for key, value in values.items()}


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def assert_readable(message: str, expected: str) -> None:
    assert expected in message, message[: MAX_MESSAGE_CHARS * 2]
    # the test's own temporary folder (its length varies from run to run) counts as one word
    shown = re.sub(r"\S*pytest-of-[^/]+/pytest-[^/]+/[^/\s:]+", "<tmp>", message)
    assert len(shown) < MAX_MESSAGE_CHARS, message[: MAX_MESSAGE_CHARS * 2]
    assert "Traceback" not in message


def run_cli(argv: list[str], capsys) -> str:
    """core.train.main in-process: it must return 2 and print one `error:` message."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    return err


@pytest.fixture
def base(tmp_path, tiny_model_dir) -> dict:
    """A valid one-step config in tmp_path, and its data file."""
    (tmp_path / "data.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}\n',
        encoding="utf-8",
    )
    return {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": str(tmp_path / "data.jsonl"),
        "output_dir": str(tmp_path / "run"),
        "max_steps": 1,
    }


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """The real app's context: its runner and runs folder."""
    _, ctx = build_app(tmp_path_factory.mktemp("runs"))
    yield ctx
    ctx.runner.stop()
    ctx.runner.wait(DEADLINE_S)


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("values, expected", _config_cases())
def test_config_from_dict_names_the_problem(values, expected):
    with pytest.raises(UserInputError) as err:
        config_from_dict(values)
    assert_readable(str(err.value), expected)


@pytest.mark.parametrize("values, expected", _config_cases())
def test_the_cli_refuses_a_bad_config_and_makes_no_run_folder(values, expected, base, tmp_path, capsys):
    config_path = write_yaml(tmp_path / "c.yaml", {**base, **values})
    assert_readable(run_cli([str(config_path)], capsys), expected)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argument, expected", CONFIG_FILE_CASES)
def test_the_cli_refuses_a_config_file_it_cannot_use(argument, expected, tmp_path, capsys):
    if argument.startswith("text:"):
        config_path = tmp_path / "c.yaml"
        config_path.write_text(argument.removeprefix("text:"), encoding="utf-8")
        argument = str(config_path)
    assert_readable(run_cli([in_tmp(argument, tmp_path)], capsys), expected)
    assert files_under(tmp_path) in ([], [tmp_path / "c.yaml"])


# -------------------------------------------------------------------------------------- starting
@pytest.mark.parametrize("values, expected", START_CASES)
def test_the_cli_refuses_a_start_whose_files_are_unusable_and_writes_nothing(values, expected, base, tmp_path, capsys):
    config_path = write_yaml(tmp_path / "c.yaml", {**base, **filled(values, tmp_path)})
    before = files_under(tmp_path)
    assert_readable(run_cli([str(config_path)], capsys), expected)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("values, expected", START_CASES)
def test_the_runner_refuses_it_before_spawning_a_worker(values, expected, base, tmp_path):
    runner = Runner(tmp_path / "runs")
    config = config_from_dict({**base, **filled(values, tmp_path)})
    before = files_under(tmp_path)
    try:
        with pytest.raises(UserInputError) as err:
            runner.start(config)
    finally:
        runner.stop()  # never leave a worker behind, should a case start one
        assert runner.wait(DEADLINE_S)
    assert_readable(str(err.value), expected)
    assert runner.running() is None and files_under(tmp_path) == before


@pytest.mark.parametrize(
    "path, expected",
    [
        pytest.param(LONG_PATH, "Run folder /tmp/ddd", id="5000-chars"),
        pytest.param("/tmp/ru\x00n", "'/tmp/ru\\x00n' is not a run folder (no config.yaml)", id="NUL"),
        pytest.param("{tmp}", "is not a run folder (no config.yaml)", id="not-a-run"),
    ],
)
def test_resume_of_an_unusable_folder_says_why(path, expected, tmp_path):
    runner = Runner(tmp_path / "runs")
    with pytest.raises(UserInputError) as err:
        runner.resume(in_tmp(path, tmp_path))
    assert_readable(str(err.value), expected)
    assert runner.running() is None


# ------------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("name, content, expected", DATASET_CASES)
def test_a_bad_dataset_is_named_with_what_is_wrong(name, content, expected, tmp_path):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif content is not ...:
        path.write_bytes(content)
    with pytest.raises(UserInputError) as err:
        load_dataset(path)
    assert_readable(str(err.value), expected)
    assert name in str(err.value)


# -------------------------------------------------------------------------------------- run names
@pytest.mark.parametrize("name, expected", RUN_NAME_CASES)
def test_a_bad_run_name_is_refused_by_run_path_and_delete(name, expected, tmp_path):
    for call in (run_path, delete_run):
        with pytest.raises(UserInputError) as err:
            call(tmp_path, name)
        assert_readable(str(err.value), expected)
    assert files_under(tmp_path) == []


def test_a_run_name_that_is_not_a_string_is_refused(tmp_path):
    with pytest.raises(UserInputError, match="Run name None is not allowed"):
        run_path(tmp_path, None)


# ------------------------------------------------------------------------------------------- page
@pytest.mark.parametrize("values, expected", PAGE_CASES)
def test_the_start_button_shows_an_error_box_and_starts_nothing(values, expected, ctx, base):
    before = files_under(ctx.runs_dir)
    page = form(base["model_name_or_path"], base["dataset"], run_name="page-run")
    out = train_tab.start_run(ctx, "en", **{**page, **values})
    assert out["train_msg"] == "" and out["train_error"].startswith('<div class="lt-error">')
    assert_readable(html.unescape(out["train_error"]), expected)
    assert ctx.runner.running() is None and files_under(ctx.runs_dir) == before
