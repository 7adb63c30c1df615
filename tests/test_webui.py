"""The web UI's handlers driven as plain functions (no browser), on the tiny model, plus the launch
checks. The app is built once so the handlers run against the real wiring and AppContext."""

import subprocess
import sys

import pytest
import yaml

from core.config import FIELDS, HEADLESS_ONLY, config_from_dict
from core.data import load_dataset
from core.events import RunFolder
from core.paths import DEMO_DIR, PROJECT_ROOT, resolve_dataset
from core.probes import Probe, save_probes
from core.runs import list_runs
from tests.webui_helpers import DEADLINE_S, form, wait_for
from webui import i18n
from webui.__main__ import check_launch, is_loopback, read_auth
from webui.app import build_app
from webui.context import relabel
from webui.tabs import chat, data, export, runs, top, train


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    demo, ctx = build_app(tmp_path_factory.mktemp("runs"))
    yield demo, ctx
    ctx.runner.stop()
    ctx.runner.wait(DEADLINE_S)


@pytest.fixture(scope="module")
def ctx(app):
    return app[1]


# ------------------------------------------------------------------------------------- data tab
def test_a_bad_upload_shows_the_problem_with_its_line_number(ctx, tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
        '{"messages": [oops\n',
        encoding="utf-8",
    )
    out = data.save_upload(ctx, upload=str(bad), lang="en")
    value = out["dataset"]["value"]
    assert resolve_dataset(value).parent.parent == ctx.runs_dir / "uploads" and "Uploaded" in out["data_problems"]
    assert value.endswith("/broken.jsonl")  # the user's file name, so messages name the file they know
    preview = data.load_preview(dataset=value, dataset_format="auto", lang="en")
    assert preview["data_summary"] == "" and preview["data_preview"]["visible"] is False
    problems = preview["data_problems"]
    assert "broken.jsonl" in problems and "line 2" in problems and "not valid JSON" in problems
    assert "Traceback" not in problems


def test_a_good_dataset_is_previewed_as_chat_bubbles(dataset):
    preview = data.load_preview(dataset=str(dataset), dataset_format="auto", lang="en")
    assert preview["data_problems"] == "" and "12 conversations" in preview["data_summary"]
    assert "openai" in preview["data_summary"] and preview["example"]["maximum"] == 12
    assert [m["role"] for m in preview["data_preview"]["value"]] == ["user", "assistant"]
    shown = data.show_example(dataset=str(dataset), dataset_format="auto", example=4)
    assert shown["data_preview"][0]["content"] == "What is the code 3?"


def test_demo_datasets_are_offered_and_eval_files_are_not(ctx):
    choices = data.dataset_choices(ctx)
    assert "datasets_demo/persona_en.jsonl" in choices and "datasets_demo/alpaca_demo.json" in choices
    assert not [c for c in choices if "eval" in c]


def test_length_analysis_and_use_suggested_cutoff(dataset, tiny_model_dir):
    settings = {
        "dataset": str(dataset),
        "dataset_format": "auto",
        "model_name_or_path": str(tiny_model_dir),
        "system_prompt": "",
        "train_on_prompt": False,
        "lang": "en",
    }
    out = data.analyze(cutoff_len=1024, **settings)
    assert out["length_problems"] == "" and "<svg" in out["histogram"] and "current cutoff 1024" in out["histogram"]
    suggested = out["suggested"]
    assert isinstance(suggested, int) and f"Suggested cutoff_len: {suggested}" in out["length_report"]
    assert out["use_suggested"]["interactive"] is True
    used = data.use_suggested(suggested=suggested, lang="zh")
    assert used["cutoff_len"] == suggested and str(suggested) in used["length_problems"]
    assert "cutoff_len" not in data.use_suggested(suggested=None, lang="en")  # nothing to set: left as it is
    out = data.analyze(cutoff_len=0, **settings)
    assert out["suggested"] is None and "cutoff_len" in out["length_problems"]


def augment_options(dataset, **overrides) -> dict:
    """The Augment panel's inputs (data.AUGMENT_INPUTS by name): the rules generator, 4 per turn."""
    values = {
        "dataset": str(dataset),
        "dataset_format": "auto",
        "dataset_dir": "",
        "aug_generator": "rules",
        "aug_per_turn": 4,
        "aug_model": "",
        "aug_base_url": "",
        "aug_api_key_env": "OPENAI_API_KEY",
        "seed": 42,
        "probes": "none",
        "lang": "en",
        **overrides,
    }
    assert set(values) == set(data.AUGMENT_INPUTS)
    return values


def test_augment_preview_with_rules_lists_new_phrasings_per_fact(dataset):
    out = data.augment_preview(aug_fact="", **augment_options(dataset))
    assert out["aug_error"] == "" and out["aug_table"]["visible"] is True
    table = out["aug_table"]["value"]
    assert list(table.columns) == ["fact (the answer)", "phrasings in the data", "new phrasings"]
    for fact, originals, new in table.itertuples(index=False):  # one row per fact, each asked 3 times alike
        code = fact.removeprefix("The code is ")[0]
        assert originals.split("\n") == [f"What is the code {code}?"] * 3
        phrasings = new.split("\n")
        assert len(phrasings) >= 3 and all(code in p and p != originals.split("\n")[0] for p in phrasings)
    assert len(table) == 4
    assert "12 → " in out["aug_summary"] and "with the rules generator" in out["aug_report"]["value"]

    one = data.augment_preview(aug_fact="33", **augment_options(dataset))  # filtered as a probe's expect matches
    assert list(one["aug_table"]["value"].iloc[:, 0]) == ["The code is 33."]
    none = data.augment_preview(aug_fact="99", **augment_options(dataset))
    assert none["aug_table"]["visible"] is False and "No answer" in none["aug_error"] and "99" in none["aug_error"]


def test_writing_the_augmented_dataset_creates_and_selects_it(ctx, dataset):
    before = dataset.read_bytes()
    out = data.augment_write(ctx, **augment_options(dataset))
    written = dataset.parent / "qa.augmented.jsonl"  # a user's own file: written next to it
    assert out["aug_error"] == "" and out["dataset"]["value"] == str(written) and written.is_file()
    assert str(written) in out["dataset"]["choices"] and f"Wrote **{written}**" in out["aug_summary"]
    assert dataset.read_bytes() == before  # the source is never changed
    augmented = load_dataset(written).conversations
    assert len(augmented) > 12 and augmented[:12] == load_dataset(dataset).conversations
    assert f"12 → {len(augmented)} conversations" in out["aug_summary"]
    # A dataset the project ships is not written next to: its copy goes where an upload of it would.
    demo = data.augmented_path(ctx, DEMO_DIR / "persona_en.jsonl")
    assert demo.parent.parent == ctx.runs_dir / "uploads" and demo.name == "persona_en.augmented.jsonl"


def test_an_unreachable_endpoint_shows_a_clear_error(ctx, dataset):
    options = augment_options(dataset, aug_generator="openai", aug_base_url="http://127.0.0.1:9/v1", aug_model="m")
    out = data.augment_preview(aug_fact="", **options)
    error = out["aug_error"]
    assert "Augmentation failed" in error and "cannot connect" in error and "127.0.0.1:9" in error
    assert "Traceback" not in error and out["aug_table"]["visible"] is False
    assert "cannot connect" in data.augment_write(ctx, **options)["aug_error"]
    missing = data.augment_preview(aug_fact="", **augment_options(dataset, aug_generator="openai"))
    assert "augment_base_url must be set when augment is openai" in missing["aug_error"]
    shown = data.generator_options(aug_generator="openai")
    assert shown["aug_base_url"]["visible"] and shown["aug_model"]["visible"]
    assert not data.generator_options(aug_generator="rules")["aug_model"]["visible"]


# ------------------------------------------------------------------------------------ train tab
def test_every_config_field_is_on_the_page_or_headless_only(app):
    """The form comes from the field registry: a new TrainConfig field appears without page code."""
    demo, _ = app
    infos = [block["props"].get("info") or "" for block in demo.config["components"]]
    missing = [
        name
        for name in FIELDS
        if name not in HEADLESS_ONLY and not any(info.startswith(f"{name} · ") for info in infos)
    ]
    assert missing == []
    for name in (
        "packing",
        "trained_tokens_loss",
        "fused_lora_dropout",
        "shared_lora_input",
        "lora_addmm",
        "fused_swiglu",
        "fused_adamw",
        "release_freed_memory",
    ):
        assert any(info == i18n.field_info(name) for info in infos), name


def test_preset_fill_sets_every_form_field():
    small = top.fill_preset(preset="small-data")
    assert small["layerwise_lr"] == "cosine" and small["val_size"] == 0.1 and small["learning_rate"] == 1e-4
    assert small["dataset"].endswith("persona_en.jsonl") and small["preset_desc"]
    assert set(top.PAGE_FIELDS) <= set(small)
    quick = top.fill_preset(preset="cpu-quick-demo")
    assert quick["layerwise_lr"] == "none" and quick["val_size"] == 0.0  # reset to defaults, not kept


def test_config_preview_and_validation_messages(ctx, dataset, tiny_model_dir):
    out = train.preview_config(ctx, lang="en", **form(tiny_model_dir, dataset, "my-run"))
    assert out["train_error"] == "" and out["config_yaml"]["visible"] is True
    config = config_from_dict(yaml.safe_load(out["config_yaml"]["value"]))
    assert config.output_dir == str(ctx.runs_dir / "my-run") and config.lora_rank == 4
    out = train.preview_config(
        ctx, lang="en", **form(tiny_model_dir, dataset, "my-run", learning_rate=-1, per_device_train_batch_size=0)
    )
    assert out["config_yaml"]["visible"] is False
    error = out["train_error"]
    assert "learning_rate must be &gt; 0" in error and "per_device_train_batch_size must be &gt; 0" in error
    escaping = train.preview_config(ctx, lang="en", **form(tiny_model_dir, dataset, "../escape"))
    assert "not allowed" in escaping["train_error"]


def test_live_readouts_show_the_plan_and_advice(ctx, dataset, tiny_model_dir):
    out = train.plan_view(
        ctx, lang="en", **form(tiny_model_dir, dataset, gradient_accumulation_steps=3, max_steps=-1, num_train_epochs=2)
    )
    text = out["plan"]
    assert "Effective batch 6" in text and "2 steps per epoch" in text and "4 steps" in text
    assert "⚠️" in text and out["form_ok"] is True  # few optimizer steps
    out = train.plan_view(ctx, lang="en", **form(tiny_model_dir, dataset, lora_rank=0))
    assert "must be" in out["plan"] and out["form_ok"] is False


def test_apply_sets_the_fields_the_advice_names_and_the_note_goes(ctx, dataset, tiny_model_dir):
    values = form(tiny_model_dir, dataset, gradient_accumulation_steps=3, max_steps=-1, num_train_epochs=2)
    out = train.plan_view(ctx, lang="en", **values)
    assert "Only 4 optimizer steps" in out["plan"]
    assert out["plan_fix"] == {"num_train_epochs": "auto", "max_steps": -1}
    assert out["apply_fix"]["visible"] is True
    assert out["apply_fix"]["value"] == "Apply: num_train_epochs → auto, max_steps → -1"
    applied = train.apply_fix(plan_fix=out["plan_fix"])
    assert applied == {"num_train_epochs": "auto", "max_steps": -1}  # a number-or-auto field is a text box
    values.update(applied)
    after = train.plan_view(ctx, lang="en", **values)
    assert "optimizer steps" not in after["plan"] and after["form_ok"] is True
    assert after["plan_fix"] == {} and after["apply_fix"]["visible"] is False
    chinese = train.plan_view(ctx, lang="zh", **form(tiny_model_dir, dataset, max_steps=4))
    assert chinese["apply_fix"]["value"].startswith("应用：")


def probed_run(runs_dir, dataset):
    """A run folder as a training with probes leaves it: probes.jsonl, then a base and two adapter scorings."""
    run = RunFolder(runs_dir / "probed")
    run.prepare(yaml.safe_dump({"dataset": str(dataset)}))
    save_probes(
        [
            Probe("Which code is 1?", ["11"], "The code is 11."),
            Probe("Code 2 please", ["22"], "The code is 22."),
            Probe("Tell me code 3", ["33"], "The code is 33."),
        ],
        run.path / "probes.jsonl",
    )
    run.append_event("start", total_steps=10)
    run.append_event(
        "probe", step=0, model="base", recall=0.0, n=3, hits=0, probe_hits=[0, 0, 0], answers=["no idea", "hm", "what?"]
    )
    run.append_event(
        "probe",
        step=5,
        model="tuned",
        recall=0.3333,
        n=3,
        hits=1,
        probe_hits=[1, 0, 0],
        answers=["The code is 11.", "The code is 33.", "The code is 11."],
    )
    run.append_event(
        "probe",
        step=10,
        model="tuned",
        recall=0.6667,
        n=3,
        hits=2,
        probe_hits=[1, 1, 0],
        answers=["The code is 11.", "The code is 22.", "The code is 11."],
    )
    return run


def test_recall_chart_misses_and_more_phrasings_for_a_missed_fact(ctx, dataset, tmp_path, monkeypatch):
    run = probed_run(tmp_path, dataset)
    monkeypatch.setattr(ctx.runner, "current", lambda: run)  # the monitor shows this run
    out = train.poll_probes(ctx, lang="en", probes_seen=None, miss_fact=None)
    assert out["probe_box"]["visible"] is True
    chart = out["recall_plot"]
    assert list(chart.columns) == ["step", "recall", "series"]
    assert [(r.step, r.recall) for r in chart.itertuples() if r.series == "tuned"] == [(5, 0.3333), (10, 0.6667)]
    assert [(r.step, r.recall) for r in chart.itertuples() if r.series == "base"] == [(0, 0.0), (10, 0.0)]
    misses = out["misses"]  # from the newest adapter scoring only
    assert list(misses.columns) == ["question", "expected", "answer", "fact"]
    assert misses.values.tolist() == [["Tell me code 3", "33", "The code is 11.", "The code is 33."]]
    assert out["miss_fact"]["choices"] == [("The code is 33.", "33")] and out["miss_fact"]["value"] == "33"
    assert out["miss_augment"]["interactive"] is True
    assert train.poll_probes(ctx, lang="en", probes_seen=out["probes_seen"], miss_fact="33") == {}  # nothing new
    assert list(
        train.poll_probes(ctx, lang="zh", probes_seen=out["probes_seen"], miss_fact="33")["misses"].columns
    ) == [i18n.t(f"mon.col.{c}", "zh") for c in train.MISS_COLUMNS]

    # "More phrasings for this fact": the Data tab, its Augment panel open on the run's dataset, that fact only.
    switched = train.augment_missed_fact(ctx, miss_fact="33")
    assert switched["tabs"]["selected"] == "tab.data" and switched["augment_panel"]["open"] is True
    assert switched["aug_fact"] == "33" and switched["dataset"] == str(dataset)
    preview = data.augment_preview(aug_fact=switched["aug_fact"], **augment_options(switched["dataset"]))
    assert list(preview["aug_table"]["value"].iloc[:, 0]) == ["The code is 33."]


def test_a_run_without_probes_hides_the_probe_view(ctx, tmp_path, monkeypatch):
    run = RunFolder(tmp_path / "plain")
    run.append_event("start", total_steps=3)
    run.append_event("step", step=1, loss=2.0, epoch=0.1, lr=1e-4, elapsed_s=1.0, tokens_per_s=10.0)
    monkeypatch.setattr(ctx.runner, "current", lambda: run)
    assert train.poll_probes(ctx, lang="en", probes_seen=None, miss_fact=None)["probe_box"]["visible"] is False


def test_advice_comes_in_the_page_language(ctx, dataset, tiny_model_dir):
    values = form(tiny_model_dir, dataset, gradient_accumulation_steps=3, max_steps=-1, num_train_epochs=2)
    english, chinese = (train.plan_view(ctx, lang=lang, **values)["plan"] for lang in ("en", "zh"))
    assert "有效批大小 6" in chinese and english != chinese
    notes = lambda text: [line for line in text.splitlines() if line.startswith("- ")]  # noqa: E731
    assert notes(english) and all(any("\u4e00" <= ch <= "\u9fff" for ch in line) for line in notes(chinese))


def test_a_disabled_start_says_why(ctx):
    out = train.poll(ctx, lang="en", seen=None, form_ok=False)
    assert out["start"]["interactive"] is False and out["start_why"] == i18n.t("train.why.invalid", "en")
    zh = train.poll(ctx, lang="zh", seen=None, form_ok=False)
    assert zh["start_why"] == i18n.t("train.why.invalid", "zh") != out["start_why"]
    ok = train.poll(ctx, lang="en", seen=None, form_ok=True)
    assert ok["start"]["interactive"] is True and ok["start_why"] == ""
    assert train.poll(ctx, lang="en", seen=ok["seen"], form_ok=True) == {}  # nothing new: nothing sent


def test_start_poll_stop_chat_runs_export(ctx, dataset, tiny_model_dir):
    """The newcomer's path through the handlers: Start, watch the curve grow, Stop, chat, list, export."""
    out = train.start_run(ctx, lang="en", **form(tiny_model_dir, dataset, "handlers"))
    assert out["train_error"] == "" and "handlers" in out["train_msg"]
    error = train.start_run(ctx, lang="en", **form(tiny_model_dir, dataset, "another"))["train_error"]
    assert "already running" in error and "handlers" in error

    seen, sizes = None, []

    def grown():
        nonlocal seen
        out = train.poll(ctx, lang="en", seen=seen, form_ok=True)
        seen = out.get("seen", seen)
        if not hasattr(out.get("loss_plot"), "columns"):
            return False
        sizes.append(len(out["loss_plot"]))
        return sizes[-1] >= 3

    wait_for(grown, "three points on the loss chart")
    out = train.poll(ctx, lang="en", seen=None, form_ok=True)
    assert sizes == sorted(sizes) and list(out["loss_plot"].columns) == ["step", "loss", "series"]
    assert "step" in out["progress"] and out["stop"]["interactive"] is True
    assert out["start"]["interactive"] is False  # a job runs: Start says so, in the page language
    assert out["start_why"] == i18n.t("train.why.running", "en", run="handlers")
    assert train.poll(ctx, lang="zh", seen=None, form_ok=True)["start_why"] == i18n.t(
        "train.why.running", "zh", run="handlers"
    )

    assert "training right now" in runs.confirm_delete(ctx, runs_select="handlers", lang="en")["runs_error"]

    assert "Stopping" in train.stop_run(ctx, lang="en")["train_msg"]
    assert ctx.runner.wait(DEADLINE_S)
    out = train.poll(ctx, lang="en", seen=seen, form_ok=True)
    assert "stopped" in out["progress"] and out["start"]["interactive"] is True and out["start_why"] == ""
    assert out["resume"]["interactive"] is True

    # Chat: the run is offered, its system prompt is used, tuned and base answer side by side.
    listed = chat.refresh_runs(ctx, lang="en", chat_run=chat.BASE_ONLY, chat_known=[])
    assert listed["chat_run"]["value"] == "handlers" and listed["chat_known"] == ["handlers"]
    *_, last = chat.respond(
        ctx,
        chat_input="What is the code 1?",
        chat_base=[],
        chat_tuned=[],
        chat_run="handlers",
        chat_system="",
        chat_temperature=0.0,
        chat_max_new=8,
        chat_compare=True,
        model_name_or_path="default",
        lang="en",
    )
    assert last["chat_error"] == "" and last["chat_input"] == ""
    assert [m["role"] for m in last["chat_tuned"]] == [m["role"] for m in last["chat_base"]] == ["user", "assistant"]

    # Runs tab: listed with its status; Export: the zip is offered for download.
    table = runs.runs_table(ctx, "en")
    assert table.iloc[0]["run"] == "handlers" and table.iloc[0]["status"] == "stopped"
    assert table.iloc[0]["dataset"] == str(dataset)  # core.paths.display_path: a file outside the project in full
    assert "handlers" in export.export_choices(ctx)
    out = export.export_zip(ctx, export_run="handlers", lang="en")
    assert out["export_error"] == "" and out["export_file"].endswith("handlers-adapter.zip")
    frame = runs.overlay_plot(ctx, ["handlers"])
    assert set(frame["run"]) == {"handlers"} and len(frame) >= 3

    out = runs.confirm_delete(ctx, runs_select="handlers", lang="en")
    assert out["runs_error"] == "" and "Deleted" in out["runs_msg"] and not list_runs(ctx.runs_dir)


def test_an_empty_chat_message_changes_only_the_error_box(ctx):
    assert list(
        chat.respond(
            ctx,
            chat_input="  ",
            chat_base=[],
            chat_tuned=[],
            chat_run="",
            chat_system="",
            chat_temperature=0.0,
            chat_max_new=8,
            chat_compare=True,
            model_name_or_path="default",
            lang="en",
        )
    ) == [{"chat_error": ""}]


# ---------------------------------------------------------------------------------------- i18n
def test_every_text_exists_in_both_languages(app):
    _, ctx = app
    for key, (en, zh) in i18n.TEXT.items():
        assert en.strip() and zh.strip(), key
    for name in top.PAGE_FIELDS:
        assert i18n.field_label(name, "zh") and name in i18n.field_info(name, "zh")
    updates = relabel(ctx, lang="zh")
    assert set(updates) == set(ctx.labels)
    assert {"label": "学习率"}.items() <= updates["learning_rate"].items()
    assert {"label": "模型"}.items() <= updates["model_name_or_path"].items()  # the top bar's field, by its key
    assert updates["start"]["value"] == i18n.t("train.start", "zh")


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
    result = subprocess.run(
        [sys.executable, "-m", "webui", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "without a login" in result.stderr and "--auth" in result.stderr


def test_a_worker_error_appears_with_the_log_tail(ctx, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken.jsonl"  # found at Start, refused by the worker when it reads line 2
    broken.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{not json\n',
        encoding="utf-8",
    )
    out = train.start_run(ctx, lang="en", **form(tiny_model_dir, broken, "broken-model"))
    assert out["train_error"] == "" and "broken-model" in out["train_msg"]
    assert ctx.runner.wait(DEADLINE_S)
    out = train.poll(ctx, lang="en", seen=None, form_ok=True)
    assert "failed" in out["failure"] and "not valid JSON" in out["failure"]
    assert "not valid JSON" in out["log"]  # the worker's own report, from train.log
    assert out["start"]["interactive"] is True and out["stop"]["interactive"] is False and out["loss_plot"] is None
    runs.confirm_delete(ctx, runs_select="broken-model", lang="en")
    out = train.poll(ctx, lang="en", seen=None, form_ok=True)
    assert out["progress"] == i18n.t("mon.no_run", "en")  # the deleted run is no longer shown
