"""The web UI's handlers driven as plain functions (no browser), on the tiny model, plus the launch
checks. The app is built once so the handlers run against the real wiring and AppContext."""
import subprocess
import sys
import time

import gradio as gr
import pytest
import yaml

from core.config import TrainConfig, config_from_dict
from core.runs import list_runs
from tests.conftest import qa_records, write_jsonl
from webui import i18n
from webui.__main__ import check_launch, is_loopback, read_auth
from webui.app import build_app
from webui.context import relabel
from core.paths import PROJECT_ROOT
from webui.tabs import chat, data, export, runs, train

DEADLINE_S = 240


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    demo, ctx = build_app(tmp_path_factory.mktemp("runs"))
    yield demo, ctx
    ctx.runner.stop()
    ctx.runner.wait(DEADLINE_S)


@pytest.fixture(scope="module")
def ctx(app):
    return app[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "qa.jsonl", qa_records(12))


def form(model, dataset, run_name="", **overrides) -> list:
    """Handler arguments in CONFIG_INPUTS order, from TrainConfig defaults plus tiny-run settings."""
    values = TrainConfig(max_steps=1000, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                         cutoff_len=64, lora_rank=4, lora_alpha=8, save_steps=1000).to_dict()
    values.update(model_name_or_path=str(model), dataset=str(dataset), run_name=run_name, **overrides)
    return [values[key] for key in train.CONFIG_INPUTS]


def wait_for(predicate, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------------- data tab
def test_a_bad_upload_shows_the_problem_with_its_line_number(ctx, tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"messages": [oops\n', encoding="utf-8")
    update, note = data.save_upload(ctx, str(bad), "en")
    value = update["value"]
    assert data.resolve_dataset(value).parent.parent == ctx.runs_dir / "uploads" and "Uploaded" in note
    assert value.endswith("/broken.jsonl")  # the user's file name, so messages name the file they know
    summary, problems, _, conversation = data.load_preview(value, "auto", "en")
    assert summary == "" and conversation["visible"] is False
    assert "broken.jsonl" in problems and "line 2" in problems and "not valid JSON" in problems and "Traceback" not in problems


def test_a_good_dataset_is_previewed_as_chat_bubbles(dataset):
    summary, problems, slider, conversation = data.load_preview(str(dataset), "auto", "en")
    assert problems == "" and "12 conversations" in summary and "openai" in summary
    assert slider["maximum"] == 12
    assert [m["role"] for m in conversation["value"]] == ["user", "assistant"]
    assert data.show_example(str(dataset), "auto", 4)[0]["content"] == "What is the code 3?"


def test_demo_datasets_are_offered_and_eval_files_are_not(ctx):
    choices = data.dataset_choices(ctx)
    assert "datasets_demo/persona_en.jsonl" in choices and "datasets_demo/alpaca_demo.json" in choices
    assert not [c for c in choices if "eval" in c]


def test_length_analysis_and_use_suggested_cutoff(dataset, tiny_model_dir):
    report, svg, suggested, button, problems = data.analyze(str(dataset), "auto", str(tiny_model_dir), 1024, "",
                                                            False, "en")
    assert problems == "" and "<svg" in svg and "current cutoff 1024" in svg
    assert isinstance(suggested, int) and f"Suggested cutoff_len: {suggested}" in report
    assert button["interactive"] is True
    value, note = data.use_suggested(suggested, "zh")
    assert value == suggested and str(suggested) in note
    _, _, none, _, problems = data.analyze(str(dataset), "auto", str(tiny_model_dir), 0, "", False, "en")
    assert none is None and "cutoff_len" in problems


# ------------------------------------------------------------------------------------ train tab
def test_preset_fill_sets_every_form_field():
    small = train.fill_preset("small-data")
    fields = dict(zip(train.FORM_FIELDS, small[3:-1]))
    assert fields["layerwise_lr"] == "cosine" and fields["val_size"] == 0.1 and fields["learning_rate"] == 1e-4
    assert small[1].endswith("persona_en.jsonl") and small[-1]  # dataset and description
    quick = dict(zip(train.FORM_FIELDS, train.fill_preset("cpu-quick-demo")[3:-1]))
    assert quick["layerwise_lr"] == "none" and quick["val_size"] == 0.0  # reset to defaults, not kept


def test_config_preview_and_validation_messages(ctx, dataset, tiny_model_dir):
    code, error = train.preview_config(ctx, "en", *form(tiny_model_dir, dataset, "my-run"))
    assert error == "" and code["visible"] is True
    config = config_from_dict(yaml.safe_load(code["value"]))
    assert config.output_dir == str(ctx.runs_dir / "my-run") and config.lora_rank == 4
    code, error = train.preview_config(ctx, "en", *form(tiny_model_dir, dataset, "my-run", learning_rate=-1,
                                                        per_device_train_batch_size=0))
    assert code["visible"] is False
    assert "learning_rate must be &gt; 0" in error and "per_device_train_batch_size must be &gt; 0" in error
    _, error = train.preview_config(ctx, "en", *form(tiny_model_dir, dataset, "../escape"))
    assert "not allowed" in error


def test_live_readouts_show_the_plan_and_advice(ctx, dataset, tiny_model_dir):
    text = train.plan_view(ctx, "en", *form(tiny_model_dir, dataset, gradient_accumulation_steps=3,
                                            max_steps=-1, num_train_epochs=2))
    assert "Effective batch 6" in text and "2 steps per epoch" in text and "4 steps" in text
    assert "⚠️" in text  # few optimizer steps
    assert "must be" in train.plan_view(ctx, "en", *form(tiny_model_dir, dataset, lora_rank=0))


def test_start_poll_stop_chat_runs_export(ctx, dataset, tiny_model_dir):
    """The newcomer's path through the handlers: Start, watch the curve grow, Stop, chat, list, export."""
    message, error = train.start_run(ctx, "en", *form(tiny_model_dir, dataset, "handlers"))
    assert error == "" and "handlers" in message
    _, error = train.start_run(ctx, "en", *form(tiny_model_dir, dataset, "another"))
    assert "already running" in error and "handlers" in error

    seen, sizes = None, []

    def grown():
        nonlocal seen
        out = train.poll(ctx, "en", seen)
        seen = out[-1]
        if isinstance(out[0], type(gr.skip())) or not hasattr(out[0], "columns"):
            return False
        sizes.append(len(out[0]))
        return len(out[0]) >= 3
    wait_for(grown, "three points on the loss chart")
    assert sizes == sorted(sizes) and list(train.poll(ctx, "en", None)[0].columns) == ["step", "loss", "series"]
    out = train.poll(ctx, "en", None)
    assert "step" in out[1] and out[6]["interactive"] is True  # progress line, Stop enabled

    _, _, error = runs.confirm_delete(ctx, "handlers", "en")
    assert "training right now" in error

    message, _ = train.stop_run(ctx, "en")
    assert "Stopping" in message
    assert ctx.runner.wait(DEADLINE_S)
    out = train.poll(ctx, "en", seen)
    assert "stopped" in out[1] and out[5]["interactive"] is True and out[7]["interactive"] is True

    # Chat: the run is offered, its system prompt is used, tuned and base answer side by side.
    update, known = chat.refresh_runs(ctx, "en", chat.BASE_ONLY, [])
    assert update["value"] == "handlers" and known == ["handlers"]
    *_, last = chat.respond(ctx, "What is the code 1?", [], [], "handlers", "", 0.0, 8, True, "default", "en")
    _, base, tuned, error = last
    assert error == ""
    assert [m["role"] for m in tuned] == [m["role"] for m in base] == ["user", "assistant"]

    # Runs tab: listed with its status; Export: the zip is offered for download.
    table = runs.runs_table(ctx, "en")
    assert table.iloc[0]["run"] == "handlers" and table.iloc[0]["status"] == "stopped"
    assert "handlers" in export.export_choices(ctx)
    file, message, error = export.export_zip(ctx, "handlers", "en")
    assert error == "" and file.endswith("handlers-adapter.zip")
    frame = runs.overlay_plot(ctx, ["handlers"])
    assert set(frame["run"]) == {"handlers"} and len(frame) >= 3

    row, message, error = runs.confirm_delete(ctx, "handlers", "en")
    assert error == "" and "Deleted" in message and not list_runs(ctx.runs_dir)


# ---------------------------------------------------------------------------------------- i18n
def test_every_text_exists_in_both_languages(app):
    _, ctx = app
    for key, (en, zh) in i18n.TEXT.items():
        assert en.strip() and zh.strip(), key
    for name in [*train.FORM_FIELDS, "dataset_format"]:
        assert i18n.field_label(name, "zh") and name in i18n.field_info(name, "zh")
    updates = relabel(ctx, "zh")
    assert len(updates) == len(ctx.labels)
    assert {"label": "学习率"}.items() <= updates[[k for _, _, k in ctx.labels].index("learning_rate")].items()


# --------------------------------------------------------------------------------------- launch
def test_launch_checks():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.3.4.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    assert check_launch("127.0.0.1", False, []) is None
    assert "without a login" in check_launch("0.0.0.0", False, [])
    assert "--share" in check_launch("127.0.0.1", True, [])
    assert check_launch("0.0.0.0", True, [("u", "p")]) is None
    assert read_auth("ann:s3:cret", None) == [("ann", "s3:cret")]
    with pytest.raises(ValueError, match="user:password"):
        read_auth("nopassword", None)


def test_auth_file(tmp_path):
    file = tmp_path / "logins"
    file.write_text("# team\nann:one\n\nbob:two\n")
    assert read_auth(None, str(file)) == [("ann", "one"), ("bob", "two")]
    file.write_text("bad line\n")
    with pytest.raises(ValueError, match="line 1"):
        read_auth(None, str(file))


@pytest.mark.parametrize("args", [["--host", "0.0.0.0"], ["--share"]])
def test_an_exposed_launch_without_auth_exits_with_a_message(args):
    result = subprocess.run([sys.executable, "-m", "webui", *args], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "without a login" in result.stderr and "--auth" in result.stderr


def test_a_worker_error_appears_with_the_log_tail(ctx, dataset, tmp_path):
    missing = tmp_path / "no" / "such-model"
    message, error = train.start_run(ctx, "en", *form(missing, dataset, "broken-model"))
    assert error == "" and "broken-model" in message
    assert ctx.runner.wait(DEADLINE_S)
    plot, progress, notes, failure, log, start, stop, resume, _ = train.poll(ctx, "en", None)
    assert "failed" in failure and "Model folder not found" in failure
    assert "Model folder not found" in log  # the worker's own report, from train.log
    assert start["interactive"] is True and stop["interactive"] is False and plot is None
    runs.confirm_delete(ctx, "broken-model", "en")
    assert train.poll(ctx, "en", None)[1] == i18n.t("mon.no_run", "en")  # the deleted run is no longer shown
