"""Train tab: the hyperparameter form with live read-outs, Start / Stop / Resume, and the monitor.

The form is laid out from the field registry (core.config): one component per TrainConfig field,
named by its config key, in its group and declaration order. The plan read-out offers the
advisor's fixes as one Apply button. The monitor (the loss; the fact probes' recall and misses when
the run scores probes) is polled by a gr.Timer every second. What it shows comes from the runner
(the server's one job) and the run folder, never from the browser session, so a reloaded page or a
second browser sees the same job. A tick that finds nothing new sends nothing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core import advisor
from core.config import GROUPS, SPECS, TrainConfig, config_from_dict, config_to_yaml, fields_in_group
from core.data import train_count
from core.dataset_info import page_dataset
from core.errors import UserInputError
from core.estimate import GIB, Estimate, preflight
from core.events import RunFolder
from core.lf_compat import to_lf_yaml
from core.paths import PROJECT_ROOT, display_path
from core.presets import DEFAULT_PRESET
from core.probes import RUN_PROBES_FILE, Probe, load_probes
from core.runs import RunState, RunStatus, list_runs, progress_of, run_path, run_state
from webui import i18n
from webui.context import AppContext, Updates, error_html
from webui.plots import RECALL_SERIES, loss_frame, name_every_series, recall_frame
from webui.runner import JobRunning, process_choices
from webui.tabs import data as data_tab
from webui.tabs.top import PAGE_FIELDS, preset_form

# The form's groups in the registry's order; the top bar and the data tab hold the other two.
FORM_GROUPS = [group for group in GROUPS if group not in ("top", "data_tab")]
PER_ROW = {"data": 2, "facts": 2}  # fields that share a row (3 in other groups): long help texts want room
COLLAPSED = "advanced"  # the group in the closed accordion
FIELD_PROPS = {"system_prompt": {"lines": 2}}
# What every config-building handler receives besides the language: the run name and every field.
FORM = ["run_name", *PAGE_FIELDS]
MONITOR = ["loss_plot", "progress", "loss_notes", "failure", "log", "start", "start_why", "stop", "resume", "seen"]
PROBE_MONITOR = ["probe_box", "recall_plot", "misses", "miss_fact", "miss_augment", "probes_seen"]
MISS_COLUMNS = ["question", "expected", "answer", "fact"]
FACT_LABEL_CHARS = 70
LOG_LINES = 12
POLL_INTERVAL_S = 1.0


# ------------------------------------------------------------------------------------ the config
def default_run_name(ctx: AppContext) -> str:
    base = time.strftime("run-%Y%m%d-%H%M%S")
    name, n = base, 1
    while (ctx.runs_dir / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def form_config(ctx: AppContext, form: dict[str, Any], run_name: str | None = None) -> TrainConfig:
    """The TrainConfig the form describes; raises UserInputError with every problem."""
    values = dict(form)
    name = (values.pop("run_name", "") or "").strip() or run_name or default_run_name(ctx)
    values["output_dir"] = str(run_path(ctx.runs_dir, name))
    values["dataset"], values["dataset_dir"] = page_dataset(values.get("dataset", ""), values.get("dataset_dir", ""))
    values["model_name_or_path"] = (values.get("model_name_or_path") or "").strip()
    return config_from_dict(values, source="the form")


def _notes(notes: list[advisor.Note]) -> list[str]:
    return [f"- {'⚠️' if note.level == 'warn' else 'ℹ️'} {note.message}" for note in notes]


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def fix_button(fix: dict[str, Any], lang: str) -> dict[str, Any]:
    """Apply, labelled with what it changes ("Apply: num_train_epochs → auto, max_steps → -1")."""
    changes = ", ".join(f"{name} → {_shown(value)}" for name, value in fix.items())
    return gr.update(visible=bool(fix), value=i18n.t("train.apply", lang, changes=changes))


def plan_view(ctx: AppContext, lang: str, **form: Any) -> Updates:
    """Effective batch, steps and the advisor's notes, as the user types; whether the form is valid;
    the config changes the notes suggest (the first note to name a field wins) behind Apply."""
    try:
        config = form_config(ctx, form, run_name="preview")
    except UserInputError as err:
        problems = "\n".join(f"- {p}" for p in err.problems or [str(err)])
        return {
            "plan": f"**{i18n.t('train.invalid', lang)}**\n\n{problems}",
            "form_ok": False,
            "apply_fix": gr.update(visible=False),
            "plan_fix": {},
        }
    count = data_tab.count_examples(
        form.get("dataset", ""), form.get("dataset_format", "auto"), form.get("dataset_dir", "")
    )
    if count:
        examples = train_count(count, config.val_size)
        plan = advisor.training_plan(config, examples)
        lines = [
            i18n.t(
                "train.plan",
                lang,
                batch=plan["effective_batch_size"],
                total=plan["total_steps"],
                steps_per_epoch=plan["steps_per_epoch"],
                examples=examples,
            )
        ]
    else:
        lines = [i18n.t("train.plan_no_data", lang, batch=config.effective_batch_size)]
    notes = [
        n for n in advisor.advise(config, count or None, lang=lang) if n.rule not in ("effective_batch", "steps")
    ]  # those are in the read-out line
    fix: dict[str, Any] = {}
    for note in notes:
        for name, value in note.fix.items():
            fix.setdefault(name, value)
    return {
        "plan": "\n".join(lines + _notes(notes)),
        "form_ok": True,
        "apply_fix": fix_button(fix, lang),
        "plan_fix": fix,
    }


def apply_fix(plan_fix: dict[str, Any]) -> Updates:
    """The suggested values into their fields; the fields' change events then recompute the plan."""
    return {name: str(value) if SPECS[name].auto else value for name, value in plan_fix.items()}


def preview_config(ctx: AppContext, lang: str, **form: Any) -> Updates:
    try:
        config = form_config(ctx, form)
    except UserInputError as err:
        return {
            "config_yaml": gr.update(visible=False),
            "config_lf_yaml": gr.update(visible=False),
            "train_error": error_html(i18n.t("train.invalid", lang), str(err)),
        }
    return {
        "config_yaml": gr.update(value=config_to_yaml(config), visible=True),
        "config_lf_yaml": gr.update(value=to_lf_yaml(config), visible=True),
        "train_error": "",
    }


# ------------------------------------------------------------------------------- start and stop
def launch(
    lang: str, start: Callable[[], RunFolder], started_key: str, invalid_title: str | None = None
) -> tuple[str, str]:
    """(message, error box) of starting a job: start() returns its run or raises why it cannot run.
    `invalid_title` heads the problems of a refused config; other refusals are one sentence."""
    try:
        run = start()
    except JobRunning as err:
        return "", error_html(i18n.t("msg.job_running", lang, run=err.run.path.name).replace("**", ""))
    except UserInputError as err:
        return "", error_html(invalid_title, str(err)) if invalid_title else error_html(str(err))
    return i18n.t(started_key, lang, run=run.path.name), ""


def start_run(ctx: AppContext, lang: str, **form: Any) -> Updates:
    message, error = launch(
        lang,
        lambda: ctx.runner.start(form_config(ctx, form)),
        "msg.started",
        invalid_title=i18n.t("train.invalid", lang),
    )
    return {"train_msg": message, "train_error": error}


def stop_run(ctx: AppContext, lang: str) -> Updates:
    run = ctx.runner.stop()
    message = (
        i18n.t("msg.nothing_running", lang) if run is None else i18n.t("msg.stop_requested", lang, run=run.path.name)
    )
    return {"train_msg": message, "train_error": ""}


def resumable(ctx: AppContext) -> RunFolder | None:
    """The run Resume continues: the current one, else the newest stopped/failed run with a checkpoint."""
    current = ctx.runner.current()
    states = [run_state(current.path)] if current is not None else list_runs(ctx.runs_dir)
    return next((state.run for state in states if state.can_resume), None)


def resume_run(ctx: AppContext, lang: str) -> Updates:
    run = resumable(ctx)
    if run is None:
        return {"train_msg": i18n.t("msg.nothing_to_resume", lang), "train_error": ""}
    message, error = launch(lang, lambda: ctx.runner.resume(run.path), "msg.resumed")
    return {"train_msg": message, "train_error": error}


# ------------------------------------------------------------------------------------ monitoring
def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def _loss(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def progress_markdown(state: RunState, events: list[dict[str, Any]], stopping: bool, lang: str) -> str:
    status_text = i18n.t(f"status.{state.status}", lang)
    if state.status.ended:
        return i18n.t(
            "mon.final",
            lang,
            run=state.name,
            status=status_text,
            step=state.step or "—",
            total=state.total_steps or "—",
            loss=_loss(state.final_loss),
            eval_loss=_loss(state.final_eval_loss),
        )
    progress = progress_of(events)
    if progress is None:
        return i18n.t("mon.starting", lang, run=state.name)
    text = i18n.t(
        "mon.progress",
        lang,
        run=state.name,
        status=status_text,
        step=progress.step,
        total=progress.total_steps,
        epoch=progress.epoch,
        tps=progress.tokens_per_s,
        elapsed=_duration(progress.elapsed_s),
        eta=_duration(progress.eta_s),
    )
    return text + (f" · *{i18n.t('mon.stopping', lang)}*" if stopping else "")


def notes_markdown(state: RunState, events: list[dict[str, Any]], lang: str) -> str:
    if state.status in (RunStatus.DONE, RunStatus.STOPPED):
        return advisor.summary_card(events, lang=lang)
    warnings = [f"- ⚠️ {e['message']}" for e in events if e["type"] == "warning"]
    return "\n".join(warnings + _notes(advisor.loss_notes(events, lang=lang)))


def start_button(ctx: AppContext, form_ok: bool, lang: str) -> Updates:
    """Start is offered when no job runs and the form is valid; otherwise the line beside it says why."""
    running = ctx.runner.running()
    if running is not None:
        why = i18n.t("train.why.running", lang, run=running.path.name)
    elif not form_ok:
        why = i18n.t("train.why.invalid", lang)
    else:
        why = ""
    return {"start": gr.update(interactive=not why), "start_why": why}


def poll(ctx: AppContext, lang: str, seen: Any, form_ok: bool) -> Updates:
    """One timer tick: the chart, progress, notes, failure box, log tail and the three buttons."""
    run = ctx.runner.current()
    running = ctx.runner.running() is not None
    stopping = ctx.runner.stop_requested()
    events = ctx.runner.events(run) if run is not None else []
    state = run_state(run.path, events) if run is not None else None
    log_size = run.log.stat().st_size if run is not None and run.log.is_file() else 0
    signature = (state and (str(state.path), len(events), log_size, state.status), stopping, running, form_ok, lang)
    if signature == seen:
        return {}
    buttons = {
        **start_button(ctx, form_ok, lang),
        "stop": gr.update(interactive=running and not stopping),
        "resume": gr.update(interactive=not running and resumable(ctx) is not None),
        "seen": signature,
    }
    if state is None:
        return {
            "loss_plot": None,
            "progress": i18n.t("mon.no_run", lang),
            "loss_notes": "",
            "failure": "",
            "log": "",
            **buttons,
        }
    failure = ""
    if state.status == RunStatus.ERROR:
        failure = error_html(i18n.t("mon.failed", lang, run=state.name).replace("**", ""), state.message)
    return {
        "loss_plot": chart_value(events),
        "progress": progress_markdown(state, events, stopping, lang),
        "loss_notes": notes_markdown(state, events, lang),
        "failure": failure,
        "log": run.log_tail(LOG_LINES),
        **buttons,
    }


def chart_value(events: list[dict[str, Any]]):
    """The loss frame, or None while it is empty.

    gradio 6's LinePlot fixes its colour scale from the first data it draws: once it has drawn an
    empty frame, later points get no colour and the line stays invisible. None avoids that, and
    name_every_series does the same for the eval line, whose first point comes later (it also puts
    both series in the legend from the start).
    """
    frame = loss_frame(events)
    return name_every_series(frame) if len(frame) else None


def missed_probes(run: RunFolder, events: list[dict[str, Any]]) -> list[tuple[Probe, str]]:
    """(probe, answer) of each probe the newest adapter scoring missed: the event's probe_hits and
    answers are in the order of the run's probes.jsonl."""
    tuned = next((e for e in reversed(events) if e["type"] == "probe" and e["model"] == "tuned"), None)
    if tuned is None:
        return []
    probes = load_probes(run.path / RUN_PROBES_FILE)
    return [(probe, answer) for probe, answer, hit in zip(probes, tuned["answers"], tuned["probe_hits"]) if not hit]


def fact_of(probe: Probe) -> str:
    """A probe's fact as core.probes groups it: its label, else its expected strings."""
    return probe.fact or " + ".join(probe.expect)


def misses_frame(misses: list[tuple[Probe, str]], lang: str) -> pd.DataFrame:
    rows = [[probe.question, " + ".join(probe.expect), answer, fact_of(probe)] for probe, answer in misses]
    return pd.DataFrame(rows, columns=[i18n.t(f"mon.col.{column}", lang) for column in MISS_COLUMNS])


def probe_view(run: RunFolder | None, events: list[dict[str, Any]], miss_fact: str | None, lang: str) -> Updates:
    """The recall chart, the misses table and the missed facts to augment; hidden without probe events.

    A missed fact is offered by its expected strings joined with ' + ', which is what the Data tab's
    fact filter reads (the answers that hold all of them); the chosen one stays chosen while missed."""
    frame = recall_frame(events)
    if frame.empty:
        return {"probe_box": gr.update(visible=False)}
    misses = missed_probes(run, events)
    facts: dict[str, str] = {}  # the filter value -> the fact's label, in the order of the misses
    for probe, _ in misses:
        facts.setdefault(" + ".join(probe.expect), fact_of(probe))
    choices = [
        (label if len(label) <= FACT_LABEL_CHARS else label[:FACT_LABEL_CHARS] + "…", value)
        for value, label in facts.items()
    ]
    chosen = miss_fact if miss_fact in facts else next(iter(facts), None)
    return {
        "probe_box": gr.update(visible=True),
        "recall_plot": name_every_series(frame, RECALL_SERIES),
        "misses": misses_frame(misses, lang),
        "miss_fact": gr.update(choices=choices, value=chosen),
        "miss_augment": gr.update(interactive=bool(facts)),
    }


def poll_probes(ctx: AppContext, lang: str, probes_seen: Any, miss_fact: str | None) -> Updates:
    """The timer's other tick: probe_view of the monitored run, sent only when a scoring came in."""
    run = ctx.runner.current()
    events = ctx.runner.events(run) if run is not None else []
    signature = (run and str(run.path), sum(e["type"] == "probe" for e in events), lang)
    if signature == probes_seen:
        return {}
    return {**probe_view(run, events, miss_fact, lang), "probes_seen": signature}


def augment_missed_fact(ctx: AppContext, miss_fact: str | None) -> Updates:
    """'More phrasings for this fact': the Data tab's Augment panel, open, filtered to the fact, on
    the dataset the monitored run trained on."""
    run = ctx.runner.current()
    dataset = run_state(run.path).config.get("dataset") if run is not None else None
    updates = {
        "tabs": gr.update(selected="tab.data"),
        "augment_panel": gr.update(open=True),
        "aug_fact": miss_fact or "",
    }
    return {**updates, "dataset": display_path(dataset)} if dataset else updates


# ---------------------------------------------------------------------------- pre-flight estimate
ESTIMATE_OUTPUTS = ["estimate", "estimate_status"]
_calibrating = threading.Lock()  # one calibration at a time: two would slow each other's measurements


def _size(num_bytes: int) -> str:
    if num_bytes >= GIB / 10:
        return f"{num_bytes / GIB:.1f} GB"
    return f"{num_bytes / 2**20:.0f} MB" if num_bytes >= 2**20 else "<1 MB"


def _step_time(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 60 else _duration(seconds)


def _dataset(form: dict[str, Any]):
    """The form's dataset as the page has it loaded, or None."""
    try:
        return data_tab.load(form.get("dataset", ""), form.get("dataset_format", "auto"), form.get("dataset_dir", ""))
    except UserInputError:
        return None


def estimate_markdown(est: Estimate, config: TrainConfig, lang: str) -> str:
    """The estimate's line, its memory parts, and a 'will not fit' (or 'tight') warning with the fixes."""
    kind = "VRAM" if est.device == "cuda" else "RAM"
    peak, available = _size(est.peak_bytes), _size(est.available_bytes)
    source = i18n.t(f"est.source.{est.cost_source}", lang)
    common = {"source": source, "step": _step_time(est.step_s), "kind": kind, "peak": peak, "available": available}
    if est.total_steps is None:
        paragraphs = [i18n.t("est.line_no_steps", lang, **common)]
    else:
        paragraphs = [i18n.t("est.line", lang, steps=est.total_steps, total=_duration(est.total_s), **common)]
    memory = est.memory
    parts = {name: _size(getattr(memory, name)) for name in ("weights", "lora", "activations", "logits", "runtime")}
    per_process = i18n.t("est.per_process", lang, processes=est.processes) if est.processes > 1 else ""
    loading = i18n.t("est.loading", lang, loading=_size(memory.loading)) if memory.loading_decides else ""
    paragraphs.append(i18n.t("est.parts", lang, **parts) + loading + per_process)
    if not est.tokens.from_data:
        paragraphs.append(i18n.t("est.no_data", lang, cutoff=config.cutoff_len))
    if not est.fits:
        fixes = [i18n.t("est.no_fit", lang, peak=peak, available=available, kind=kind)]
        for fix in est.fixes:
            change = ", ".join(f"{name} → {_shown(value)}" for name, value in fix.change.items())
            fits = i18n.t("est.fits", lang) if fix.fits else ""
            fixes.append(i18n.t("est.fix", lang, change=change, peak=_size(fix.peak_bytes), fits=fits))
        paragraphs.append("\n".join(fixes))
    elif est.tight:
        paragraphs.append(i18n.t("est.tight", lang, peak=peak, available=available, kind=kind))
    return "\n\n".join(paragraphs)


def estimate_view(ctx: AppContext, lang: str, **form: Any) -> Updates:
    """The pre-flight estimate of the form's run, as the user types (nothing while the form is invalid)."""
    try:
        config = form_config(ctx, form, run_name="preview")
    except UserInputError:
        return {"estimate": ""}
    dataset = _dataset(form)
    try:
        est = preflight(config, dataset.conversations if dataset is not None else None)
    except UserInputError as err:
        return {"estimate": i18n.t("est.unavailable", lang, reason=str(err))}
    return {"estimate": estimate_markdown(est, config, lang)}


def calibrate(ctx: AppContext, lang: str, only_if_rough: bool = False, **form: Any):
    """Measure this machine's speed for the form's settings in a `python -m core.calibration`
    process (never in the server), streaming its lines, then the estimate with the new speed.
    `only_if_rough`: only when no calibration of this machine covers the settings yet."""
    try:
        config = form_config(ctx, form, run_name="preview")
        if only_if_rough and preflight(config, None).cost_source != "rough":
            return
    except UserInputError:
        return
    running = ctx.runner.running()
    if running is not None:
        yield {"estimate_status": i18n.t("est.busy_training", lang, run=running.path.name)}
        return
    if not _calibrating.acquire(blocking=False):
        yield {"estimate_status": i18n.t("est.busy_calibrating", lang)}
        return
    try:
        with tempfile.TemporaryDirectory(prefix="lora-tailor-calibrate-") as tmp:
            config_file = Path(tmp) / "config.yaml"
            config_file.write_text(config_to_yaml(config), encoding="utf-8")
            yield {"estimate_status": i18n.t("est.calibrating", lang, line="")}
            process = subprocess.Popen(
                [sys.executable, "-m", "core.calibration", str(config_file)],
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            last = ""  # the newest line it printed: its progress, its result, or why it failed
            for line in process.stdout:
                last = line.strip() or last
                if line.startswith(("calibration:", "calibrated:")):
                    yield {"estimate_status": i18n.t("est.calibrating", lang, line=last.split(":", 1)[1].strip())}
            ok = process.wait() == 0
    finally:
        _calibrating.release()
    last = last.split(":", 1)[1].strip() if last.startswith(("calibrated:", "error:")) else last
    status = i18n.t("est.calibrated" if ok else "est.calibration_failed", lang, line=last, reason=last)
    yield {**estimate_view(ctx, lang, **form), "estimate_status": status}


def build_estimate(ctx: AppContext) -> None:
    ctx.add("estimate", gr.Markdown(elem_id="lt-estimate"))
    with gr.Row():
        ctx.add(
            "calibrate",
            gr.Button(i18n.t("est.calibrate"), variant="secondary", size="sm", elem_id="lt-calibrate"),
            text="est.calibrate",
        )
        ctx.add("estimate_status", gr.Markdown(elem_id="lt-estimate-status"))


def wire_estimate(ctx: AppContext) -> None:
    c, inputs = ctx.c, ["lang", *FORM]
    ctx.listen(
        [*(c[name].change for name in inputs), ctx.page.load],
        partial(estimate_view, ctx),
        inputs=inputs,
        outputs=["estimate"],
        trigger_mode="always_last",
        api_name="estimate",
    )
    ctx.listen(
        c["calibrate"].click, partial(calibrate, ctx), inputs=inputs, outputs=ESTIMATE_OUTPUTS, api_name="calibrate"
    )
    # The first Preview of settings this machine has no measurement for calibrates them.
    ctx.listen(
        c["preview"].click,
        partial(calibrate, ctx, only_if_rough=True),
        inputs=inputs,
        outputs=ESTIMATE_OUTPUTS,
        api_visibility="private",
    )


# ---------------------------------------------------------------------------------------- layout
def _field(ctx: AppContext, name: str, value: Any) -> None:
    if SPECS[name].auto:  # a number or "auto": a text box takes both
        ctx.field(name, str(value), component=gr.Textbox)
    elif name == "num_processes":  # the devices this machine has (a preset's larger value is refused at Start)
        ctx.field(name, value, component=gr.Dropdown, choices=process_choices(), allow_custom_value=True)
    else:
        ctx.field(name, value, **FIELD_PROPS.get(name, {}))


def build(ctx: AppContext) -> None:
    values = preset_form(DEFAULT_PRESET)

    def fields(group: str) -> None:
        names, per_row = fields_in_group(group), PER_ROW.get(group, 3)
        for i in range(0, len(names), per_row):
            with gr.Row(equal_height=True):
                for name in names[i : i + per_row]:
                    _field(ctx, name, values[name])

    with gr.Row():
        with gr.Column(scale=5):
            ctx.add(
                "run_name",
                gr.Textbox(
                    label=i18n.t("train.run_name"),
                    info=i18n.t("train.run_name.info"),
                    placeholder=time.strftime("run-%Y%m%d-%H%M%S"),
                    elem_id="lt-run-name",
                ),
                text="train.run_name",
            )
            for group in FORM_GROUPS:
                if group == COLLAPSED:
                    with ctx.text(gr.Accordion(i18n.t("train.advanced"), open=False), "train.advanced"):
                        fields(group)
                else:
                    ctx.text(gr.Markdown(i18n.t(f"train.group.{group}")), f"train.group.{group}")
                    fields(group)
            ctx.add(
                "config_yaml",
                gr.Code(language="yaml", label=i18n.t("train.preview_code"), visible=False, elem_id="lt-config-yaml"),
                text="train.preview_code",
            )
            ctx.add(
                "config_lf_yaml",
                gr.Code(language="yaml", label=i18n.t("train.preview_lf"), visible=False, elem_id="lt-config-lf-yaml"),
                text="train.preview_lf",
            )
        with gr.Column(scale=6):
            with gr.Row():
                ctx.add(
                    "start", gr.Button(i18n.t("train.start"), variant="primary", elem_id="lt-start"), text="train.start"
                )
                ctx.add(
                    "stop",
                    gr.Button(i18n.t("train.stop"), variant="stop", interactive=False, elem_id="lt-stop"),
                    text="train.stop",
                )
                ctx.add(
                    "resume",
                    gr.Button(i18n.t("train.resume"), interactive=False, elem_id="lt-resume"),
                    text="train.resume",
                )
                ctx.add(
                    "preview",
                    gr.Button(i18n.t("train.preview"), variant="secondary", elem_id="lt-preview"),
                    text="train.preview",
                )
            ctx.add("start_why", gr.Markdown(elem_id="lt-start-why"))
            ctx.add("train_msg", gr.Markdown(elem_id="lt-train-msg"))
            ctx.add("train_error", gr.HTML(elem_id="lt-train-error"))
            ctx.add("plan", gr.Markdown(elem_id="lt-plan"))
            ctx.add("apply_fix", gr.Button(variant="secondary", size="sm", visible=False, elem_id="lt-apply-fix"))
            ctx.add("plan_fix", gr.State({}))  # the config changes Apply makes (plan_view decides)
            build_estimate(ctx)
            ctx.add("progress", gr.Markdown(i18n.t("mon.no_run"), elem_id="lt-progress"))
            ctx.add("failure", gr.HTML(elem_id="lt-failure"))
            # No height: a fixed one clips the legend, which gradio draws below the chart.
            ctx.add(
                "loss_plot",
                gr.LinePlot(
                    None,
                    x="step",
                    y="loss",
                    color="series",
                    color_title="",
                    label=i18n.t("train.chart"),
                    color_map={"train": "#3b6fd6", "eval": "#e07b28"},
                    elem_id="lt-loss-plot",
                ),
                text="train.chart",
            )
            ctx.add("loss_notes", gr.Markdown(elem_id="lt-loss-notes"))
            with ctx.add("probe_box", gr.Column(visible=False, elem_id="lt-probe-box")):
                ctx.add(
                    "recall_plot",
                    gr.LinePlot(
                        None,
                        x="step",
                        y="recall",
                        color="series",
                        color_title="",
                        y_lim=[0, 1],
                        label=i18n.t("train.recall_chart"),
                        color_map={"tuned": "#2e9e5b", "base": "#9a9a9a"},
                        elem_id="lt-recall-plot",
                    ),
                    text="train.recall_chart",
                )
                ctx.add(
                    "misses",
                    gr.Dataframe(
                        label=i18n.t("train.misses"),
                        interactive=False,
                        wrap=True,
                        max_height=320,
                        column_widths=["28%", "12%", "35%", "25%"],
                        elem_id="lt-misses",
                    ),
                    text="train.misses",
                )
                with gr.Row(equal_height=True):
                    ctx.add(
                        "miss_fact",
                        gr.Dropdown(
                            label=i18n.t("train.miss_fact"),
                            scale=3,
                            info=i18n.t("train.miss_fact.info"),
                            elem_id="lt-miss-fact",
                        ),
                        text="train.miss_fact",
                    )
                    ctx.add(
                        "miss_augment",
                        gr.Button(i18n.t("train.miss_augment"), interactive=False, scale=1, elem_id="lt-miss-augment"),
                        text="train.miss_augment",
                    )
                ctx.add("probes_seen", gr.State(None))  # what the probe view last sent
            ctx.add(
                "log",
                gr.Textbox(
                    label=i18n.t("train.log"),
                    lines=LOG_LINES,
                    max_lines=LOG_LINES,
                    autoscroll=True,
                    interactive=False,
                    elem_id="lt-log",
                ),
                text="train.log",
            )
            ctx.add("seen", gr.State(None))  # what the monitor last sent: a tick with nothing new sends nothing
            ctx.add("form_ok", gr.State(True))  # whether the form holds a valid config (plan_view decides)
            ctx.add("timer", gr.Timer(POLL_INTERVAL_S))


def wire(ctx: AppContext) -> None:
    c = ctx.c
    inputs = ["lang", *FORM]
    ctx.listen(
        [*(c[name].change for name in inputs), ctx.page.load],
        partial(plan_view, ctx),
        inputs=inputs,
        outputs=["plan", "form_ok", "apply_fix", "plan_fix"],
        trigger_mode="always_last",
        api_name="plan",
    )
    ctx.listen(c["apply_fix"].click, apply_fix, inputs=["plan_fix"], outputs=PAGE_FIELDS, api_name="apply_fix")
    ctx.listen(
        c["preview"].click,
        partial(preview_config, ctx),
        inputs=inputs,
        outputs=["config_yaml", "config_lf_yaml", "train_error"],
        api_name="preview_config",
    )
    ctx.listen(
        c["start"].click, partial(start_run, ctx), inputs=inputs, outputs=["train_msg", "train_error"], api_name="start"
    )
    ctx.listen(
        c["stop"].click, partial(stop_run, ctx), inputs=["lang"], outputs=["train_msg", "train_error"], api_name="stop"
    )
    ctx.listen(
        c["resume"].click,
        partial(resume_run, ctx),
        inputs=["lang"],
        outputs=["train_msg", "train_error"],
        api_name="resume",
    )
    ctx.listen(
        c["timer"].tick,
        partial(poll, ctx),
        inputs=["lang", "seen", "form_ok"],
        outputs=MONITOR,
        api_name="poll",
        concurrency_limit=None,
        show_progress="hidden",
    )
    ctx.listen(
        c["timer"].tick,
        partial(poll_probes, ctx),
        inputs=["lang", "probes_seen", "miss_fact"],
        outputs=PROBE_MONITOR,
        api_name="poll_probes",
        concurrency_limit=None,
        show_progress="hidden",
    )
    switched = ctx.listen(
        c["miss_augment"].click,
        partial(augment_missed_fact, ctx),
        inputs=["miss_fact"],
        outputs=["tabs", "augment_panel", "aug_fact", "dataset"],
        api_visibility="private",
    )
    ctx.listen(
        switched.then,
        data_tab.augment_preview,
        inputs=data_tab.PREVIEW_INPUTS,
        outputs=data_tab.AUGMENT_OUTPUTS,
        api_visibility="private",
    )
    wire_estimate(ctx)
