"""Data tab: pick or upload a dataset, see its conversations and problems, analyze token lengths,
preview and write more phrasings per fact (core.augment)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core import augment, dataset_info, placeholders
from core.config import AUTO, config_from_dict
from core.data import Conversation, Dataset, detect_format
from core.dataset_info import load_datasets, page_dataset, registry_path, resolve
from core.errors import UserInputError
from core.paths import DEMO_DIR, PROJECT_ROOT, display_path, resolve_dataset
from core.presets import DEFAULT_PRESET
from core.probes import load_probes, matches
from webui import i18n
from webui.context import AppContext, Updates, error_html, note_html
from webui.tabs import data_lengths, data_registry
from webui.tabs.data_lengths import analyze  # noqa: F401 - the handler by its old name (tests, API)
from webui.tabs.top import preset_form

UPLOADS = "uploads"  # under the runs folder: a run's config keeps pointing at a file that stays


# ------------------------------------------------------------------------------------- datasets
def _is_training_file(path: Path) -> bool:
    """Demo folders also hold eval question files: offer only files in a chat format."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            head = handle.read(4096)
        first = json.loads(head.splitlines()[0]) if path.suffix == ".jsonl" else None
        if first is not None:
            return detect_format(first) is not None
        return '"instruction"' in head or '"conversations"' in head or '"messages"' in head
    except (OSError, ValueError, IndexError):
        return False


def dataset_choices(ctx: AppContext) -> list[str]:
    demos = [p for pattern in ("*.jsonl", "*.json") for p in sorted(DEMO_DIR.glob(pattern))]
    uploads = sorted((ctx.runs_dir / UPLOADS).glob("*/*.json*"))
    return [display_path(p) for p in demos + uploads if _is_training_file(p)]


@lru_cache(maxsize=16)
def _load_cached(value: str, fmt: str, dataset_dir: str, stamps: tuple) -> Dataset:
    return load_datasets(value, fmt, dataset_dir)


def load(value: str, fmt: str = "auto", dataset_dir: str = "") -> Dataset:
    """The dataset as a run reads it (core.dataset_info: a file, or registered names with
    dataset_dir), cached until one of its files changes (the train tab re-reads it on every edit)."""
    value, dataset_dir = page_dataset(value, dataset_dir)
    files = [s if isinstance(s, Path) else s.path for s in resolve(value, dataset_dir)]
    files += [registry_path(dataset_dir)] if dataset_dir else []
    stamps = tuple((str(f), f.stat().st_mtime, f.stat().st_size) for f in files if f.is_file())
    return _load_cached(value, fmt or "auto", dataset_dir, stamps)


def count_examples(value: str, fmt: str = "auto", dataset_dir: str = "") -> int | None:
    try:
        return len(load(value, fmt, dataset_dir).conversations)
    except UserInputError:
        return None


# ------------------------------------------------------------------------------------- handlers
def load_preview(dataset: str, dataset_format: str, lang: str, dataset_dir: str = "") -> Updates:
    """The summary, problems, example slider and first conversation of the chosen dataset."""
    try:
        loaded = load(dataset, dataset_format, dataset_dir)
    except UserInputError as err:
        return {
            "data_summary": "",
            "data_problems": error_html(i18n.t("data.problems", lang), str(err)),
            "example": gr.update(value=1, visible=False),
            "data_preview": gr.update(value=[], visible=False),
        }
    count = len(loaded.conversations)
    turns = sum(len(c) for c in loaded.conversations) / max(count, 1)
    summary = i18n.t(
        "data.loaded", lang, name=Path(loaded.path).name, format=loaded.format, count=count, turns=f"{turns:.1f}"
    )
    return {
        "data_summary": summary,
        "data_problems": "",
        "example": gr.update(minimum=1, maximum=max(count, 2), value=1, visible=True),
        "data_preview": gr.update(value=preview_messages(loaded.conversations[0]), visible=True),
    }


def refresh(ctx: AppContext, dataset: str, dataset_format: str, lang: str, dataset_dir: str = "") -> Updates:
    """Page (re)load: fresh dataset choices (uploads since the app was built) and the preview."""
    choices = sorted(set(dataset_choices(ctx)) | ({dataset} if dataset else set()))
    return {"dataset": gr.update(choices=choices), **load_preview(dataset, dataset_format, lang, dataset_dir)}


def preview_messages(conversation: Conversation) -> list[dict[str, str]]:
    """The chat window's view of a conversation: the tools and calls written out, a tool's result on
    the user's side (it is input, not trained), a reply with loss_weight 0 marked as untrained. The
    marks name data keys, which read the same in both languages."""
    shown = []
    for message in conversation:
        text = message["content"]
        if message.get("tools"):
            text = f"🔧 tools: {', '.join(tool['function']['name'] for tool in message['tools'])}\n\n{text}"
        for call in message.get("tool_calls", []):
            text += f"\n🔧 {call['function']['name']}({json.dumps(call['function']['arguments'], ensure_ascii=False)})"
        if message.get("loss_weight") == 0:
            text += "\n\n*(loss_weight 0: not trained)*"
        tool = message["role"] == "tool"
        shown.append({"role": "user" if tool else message["role"], "content": f"🔧 → {text}" if tool else text.strip()})
    return shown


def show_example(dataset: str, dataset_format: str, example: float, dataset_dir: str = "") -> Updates:
    try:
        conversations = load(dataset, dataset_format, dataset_dir).conversations
    except UserInputError:
        return {"data_preview": []}
    index = min(max(int(example or 1), 1), len(conversations)) - 1
    return {"data_preview": preview_messages(conversations[index])}


def upload_folder(ctx: AppContext, source: Path) -> Path:
    """<runs>/uploads/<content hash>: one folder per content keeps the user's file name (error
    messages name it) while two different files of the same name never overwrite each other."""
    return ctx.runs_dir / UPLOADS / hashlib.sha256(source.read_bytes()).hexdigest()[:12]


def select_dataset(ctx: AppContext, path: Path) -> dict[str, Any]:
    """The dataset dropdown's update that offers and selects `path`."""
    value = display_path(path)
    return gr.update(choices=sorted(set(dataset_choices(ctx)) | {value}), value=value)


def save_upload(ctx: AppContext, upload: str | None, lang: str) -> Updates:
    """Copy an upload under <runs>/uploads (gradio's temp copy may vanish) and select it."""
    if not upload:
        return {"data_problems": ""}
    source = Path(upload)
    target = upload_folder(ctx, source) / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return {
        "dataset": select_dataset(ctx, target),
        "data_problems": note_html(i18n.t("data.upload_saved", lang, path=display_path(target))),
    }


def use_suggested(suggested: int | None, lang: str) -> Updates:
    if not suggested:
        return {"length_problems": note_html(i18n.t("data.no_suggestion", lang))}
    return {
        "cutoff_len": int(suggested),
        "length_problems": note_html(i18n.t("data.suggested_set", lang, value=int(suggested))),
    }


# --------------------------------------------------------------------------------- augmentation
AUGMENT_OPTIONS = ["aug_generator", "aug_per_turn", "aug_model", "aug_base_url", "aug_api_key_env", "seed"]
AUGMENT_INPUTS = ["dataset", "dataset_format", "dataset_dir", *AUGMENT_OPTIONS, "probes", "lang"]  # what Write reads
PREVIEW_INPUTS = [*AUGMENT_INPUTS, "aug_fact"]
AUGMENT_OUTPUTS = ["aug_table", "aug_summary", "aug_report", "aug_error"]


def generator_options(aug_generator: str) -> Updates:
    """The options the chosen generator reads: an endpoint for openai, a model for openai and local."""
    return {
        "aug_base_url": gr.update(visible=aug_generator == "openai"),
        "aug_api_key_env": gr.update(visible=aug_generator == "openai"),
        "aug_model": gr.update(visible=aug_generator != "rules"),
    }


def generator_spec(
    aug_generator: str, aug_per_turn: float, aug_model: str, aug_base_url: str, aug_api_key_env: str, seed: float
) -> dict[str, Any]:
    """core.augment's spec of the panel's options, checked as the Train tab's augment_* keys are."""
    config = config_from_dict(
        {
            "augment": aug_generator,
            "augment_per_turn": aug_per_turn,
            "augment_model": (aug_model or "").strip(),
            "augment_base_url": (aug_base_url or "").strip(),
            "augment_api_key_env": (aug_api_key_env or "").strip(),
            "seed": seed,
        },
        source="the Augment panel",
    )
    return augment.config_spec(config)


def probe_questions(probes: str) -> list[str]:
    """The questions of the Train tab's probe file, which no phrasing may come close to; 'auto'
    probes are drawn by the run itself and 'none' has none."""
    if probes in ("none", AUTO):
        return []
    return [probe.question for probe in load_probes(resolve_dataset(probes))]


def about_fact(conversations: list[Conversation], aug_fact: str) -> list[Conversation]:
    """The conversations with an answer that holds every ' + '-separated part of `aug_fact`, matched
    as a probe's expected strings are (core.probes.matches); all of them when it is empty."""
    parts = [part.strip() for part in (aug_fact or "").split(" + ") if part.strip()]
    if not parts:
        return conversations
    return [c for c in conversations if any(m["role"] == "assistant" and matches(m["content"], parts) for m in c)]


def phrasings_frame(facts: list[augment.FactPhrasings], lang: str) -> pd.DataFrame:
    rows = [[f.fact, "\n".join(f.originals), "\n".join(f.phrasings)] for f in facts]
    return pd.DataFrame(rows, columns=[i18n.t(f"aug.col.{column}", lang) for column in ("fact", "originals", "new")])


def augment_failed(lang: str, detail: str) -> Updates:
    return {
        "aug_table": gr.update(visible=False),
        "aug_summary": "",
        "aug_report": gr.update(visible=False),
        "aug_error": error_html(i18n.t("aug.failed", lang), detail),
    }


def report_updates(report: augment.AugmentReport, lang: str, heading: str = "") -> Updates:
    """The report's counts in a line, its whole summary (phrasings per fact before and after) in a
    box, and the user turns that failed (the others worked) in an error box."""
    counts = i18n.t(
        "aug.counts",
        lang,
        before=report.source_conversations,
        after=report.output_conversations,
        kept=report.kept,
        turns=report.turns_augmented,
        copies=report.removed_copies,
        near=report.removed_near_duplicates,
        lost=report.removed_missing_facts,
        leaked=report.removed_leakage,
    )
    partial = error_html(i18n.t("aug.partial", lang), "\n".join(report.errors)) if report.errors else ""
    return {
        "aug_summary": "\n\n".join(filter(None, [heading, counts])),
        "aug_report": gr.update(value=report.summary(), visible=True),
        "aug_error": partial,
    }


def _progress_bar(progress: gr.Progress | None, lang: str) -> Callable[[int, int], None] | None:
    """core.augment's progress(done, total) on the page's progress bar (none for a direct call)."""
    if progress is None:
        return None
    return lambda done, total: progress((done, total), desc=i18n.t("aug.progress", lang))


def augment_preview(
    dataset: str,
    dataset_format: str,
    dataset_dir: str,
    aug_generator: str,
    aug_per_turn: float,
    aug_model: str,
    aug_base_url: str,
    aug_api_key_env: str,
    seed: float,
    probes: str,
    lang: str,
    aug_fact: str,
    progress: gr.Progress | None = None,
) -> Updates:
    """The phrasings the chosen generator writes for each fact (of the one fact in aug_fact), none written."""
    try:
        spec = generator_spec(aug_generator, aug_per_turn, aug_model, aug_base_url, aug_api_key_env, seed)
        conversations = about_fact(load(dataset, dataset_format, dataset_dir).conversations, aug_fact)
        if not conversations:
            return augment_failed(lang, i18n.t("aug.no_fact", lang, dataset=dataset, fact=repr(aug_fact)))
        result = augment.preview(
            conversations,
            augment.make_generator(spec),
            spec["per_turn"],
            probe_questions(probes),
            spec["seed"],
            progress=_progress_bar(progress, lang),
        )
    except UserInputError as err:
        return augment_failed(lang, str(err))
    return {
        "aug_table": gr.update(value=phrasings_frame(result.facts, lang), visible=True),
        **report_updates(result.report, lang),
    }


def derived_path(ctx: AppContext, source: Path, name: str) -> Path:
    """Where a file made from `source` (its augmented or filled copy) named `name` goes: next to an
    upload or a file of the user's own; a file the project ships (the demo datasets) is not written
    next to, its copy goes where an upload of it would."""
    source, uploads = source.resolve(), (ctx.runs_dir / UPLOADS).resolve()
    if source.is_relative_to(PROJECT_ROOT) and not source.is_relative_to(uploads):
        return upload_folder(ctx, source) / name
    return source.parent / name


def augmented_path(ctx: AppContext, source: Path) -> Path:
    """Where <name>.augmented.jsonl goes (derived_path)."""
    return derived_path(ctx, source, f"{source.resolve().stem}.augmented.jsonl")


# --------------------------------------------------------------------------------- placeholders
PH_FIELDS = {"name": "ph_name", "author": "ph_author"}  # identity.json's placeholders, each its own box
PH_OUTPUTS = ["ph_panel", "ph_found", "ph_name", "ph_author", "ph_other"]


def placeholder_panel(dataset: str, dataset_dir: str, lang: str) -> Updates:
    """Shown only when the dataset holds {{name}}-style placeholders: a box for each of identity.json's
    two, and one for any others (a `key = value` line each)."""
    try:
        found = placeholders.find_placeholders(dataset_info.single_file(*page_dataset(dataset, dataset_dir)))
    except UserInputError:
        found = {}
    listed = ", ".join(f"`{{{{{name}}}}}` ×{count}" for name, count in found.items())
    return {
        "ph_panel": gr.update(visible=bool(found)),
        "ph_found": i18n.t("ph.found", lang, placeholders=listed) if found else "",
        "ph_name": gr.update(visible="name" in found),
        "ph_author": gr.update(visible="author" in found),
        "ph_other": gr.update(visible=any(name not in PH_FIELDS for name in found)),
    }


def fill_placeholders(
    ctx: AppContext, dataset: str, dataset_dir: str, ph_name: str, ph_author: str, ph_other: str, lang: str
) -> Updates:
    """Write the filled copy (core.placeholders) where an augmented one would go, and select it."""
    values = {"name": ph_name or "", "author": ph_author or ""}
    for line in (ph_other or "").splitlines():
        key, _, value = line.partition("=")
        values[key.strip().strip("{} ")] = value.strip()
    try:
        source = dataset_info.single_file(*page_dataset(dataset, dataset_dir))
        out = derived_path(ctx, source, placeholders.filled_path(source.resolve()).name)
        out.parent.mkdir(parents=True, exist_ok=True)
        written = placeholders.fill_placeholders(source, values, out)
    except UserInputError as err:
        return {"ph_msg": error_html(i18n.t("ph.failed", lang), str(err))}
    return {
        "dataset": select_dataset(ctx, written),
        "ph_msg": note_html(i18n.t("ph.written", lang, path=display_path(written))),
    }


def augment_write(
    ctx: AppContext,
    dataset: str,
    dataset_format: str,
    dataset_dir: str,
    aug_generator: str,
    aug_per_turn: float,
    aug_model: str,
    aug_base_url: str,
    aug_api_key_env: str,
    seed: float,
    probes: str,
    lang: str,
    progress: gr.Progress | None = None,
) -> Updates:
    """Write the augmented copy of the whole dataset (every fact, whatever aug_fact shows) and select it."""
    try:
        spec = generator_spec(aug_generator, aug_per_turn, aug_model, aug_base_url, aug_api_key_env, seed)
        source = dataset_info.single_file(*page_dataset(dataset, dataset_dir))
        out = augmented_path(ctx, source)
        out.parent.mkdir(parents=True, exist_ok=True)
        report = augment.augment_dataset(
            source,
            out,
            augment.make_generator(spec),
            spec["per_turn"],
            probe_questions(probes),
            spec["seed"],
            progress=_progress_bar(progress, lang),
        )
    except UserInputError as err:
        return augment_failed(lang, str(err))
    except OSError as err:  # a folder the server may not write to
        return augment_failed(lang, f"{type(err).__name__}: {err}")
    return {
        "dataset": select_dataset(ctx, out),
        **report_updates(report, lang, i18n.t("aug.written", lang, path=display_path(out))),
    }


# ---------------------------------------------------------------------------------------- layout
def build(ctx: AppContext) -> None:
    form = preset_form(DEFAULT_PRESET)
    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row(equal_height=True):
                ctx.field(
                    "dataset",
                    form["dataset"],
                    component=gr.Dropdown,
                    choices=dataset_choices(ctx),
                    allow_custom_value=True,
                    scale=3,
                )
                ctx.field("dataset_format", form["dataset_format"], scale=1, min_width=140)
            ctx.add(
                "upload",
                gr.File(
                    label=i18n.t("data.upload"),
                    file_types=[".json", ".jsonl"],
                    type="filepath",
                    height=130,
                    elem_id="lt-upload",
                ),
                text="data.upload",
            )
            data_registry.build(ctx, form)
            ctx.add("data_summary", gr.Markdown(elem_id="lt-data-summary"))
            ctx.add("data_problems", gr.HTML(elem_id="lt-data-problems"))
            build_placeholder_panel(ctx)
            count = count_examples(form["dataset"], form["dataset_format"]) or 2
            ctx.add(
                "example",
                gr.Slider(1, max(count, 2), value=1, step=1, label=i18n.t("data.example"), elem_id="lt-example"),
                text="data.example",
            )
            ctx.add(
                "data_preview",
                gr.Chatbot(label=i18n.t("data.preview"), height=380, elem_id="lt-data-preview"),
                text="data.preview",
            )
        with gr.Column(scale=4):
            ctx.text(gr.Markdown(i18n.t("data.lengths")), "data.lengths")
            ctx.text(gr.Markdown(i18n.t("data.analysis_hint")), "data.analysis_hint")
            with gr.Row():
                ctx.add(
                    "analyze",
                    gr.Button(i18n.t("data.analyze"), variant="primary", elem_id="lt-analyze"),
                    text="data.analyze",
                )
                ctx.add(
                    "use_suggested",
                    gr.Button(i18n.t("data.use_suggested"), interactive=False, elem_id="lt-use-suggested"),
                    text="data.use_suggested",
                )
            ctx.add("length_problems", gr.HTML())
            data_lengths.build(ctx)
            ctx.add("histogram", gr.HTML(elem_id="lt-histogram"))
            ctx.add("length_report", gr.Markdown(elem_id="lt-length-report"))
            ctx.add("suggested", gr.State(None))
    build_augment_panel(ctx, form)


def build_placeholder_panel(ctx: AppContext) -> None:
    with ctx.add("ph_panel", gr.Group(visible=False, elem_id="lt-ph-panel")):
        ctx.add("ph_found", gr.Markdown(elem_id="lt-ph-found"))
        with gr.Row(equal_height=True):
            for key, name in PH_FIELDS.items():
                ctx.add(name, gr.Textbox(label=i18n.t(f"ph.{key}"), scale=2, elem_id=f"lt-{name}"), text=f"ph.{key}")
            ctx.add("ph_other", gr.Textbox(label=i18n.t("ph.other"), lines=2, scale=2), text="ph.other")
            ctx.add("ph_fill", gr.Button(i18n.t("ph.fill"), scale=1, elem_id="lt-ph-fill"), text="ph.fill")
        ctx.add("ph_msg", gr.HTML())


def build_augment_panel(ctx: AppContext, form: dict[str, Any]) -> None:
    """Generator and its options (the Train tab's augment_* keys, by their labels), Preview, Write."""
    panel = gr.Accordion(i18n.t("aug.panel"), open=False, elem_id="lt-augment-panel")
    with ctx.add("augment_panel", panel, text="aug.panel"):
        ctx.text(gr.Markdown(i18n.t("aug.help")), "aug.help")
        with gr.Row(equal_height=True):
            ctx.add(
                "aug_generator",
                gr.Radio(
                    list(augment.GENERATORS),
                    value="rules",
                    label=i18n.t("aug.generator"),
                    info=i18n.t("aug.generator.info"),
                    scale=2,
                    elem_id="lt-aug-generator",
                ),
                text="aug.generator",
            )
            ctx.field("augment_per_turn", form["augment_per_turn"], register_as="aug_per_turn", scale=1)
            ctx.add(
                "aug_fact",
                gr.Textbox(label=i18n.t("aug.fact"), info=i18n.t("aug.fact.info"), scale=2, elem_id="lt-aug-fact"),
                text="aug.fact",
            )
        with gr.Row(equal_height=True):
            for name in ("augment_base_url", "augment_model", "augment_api_key_env"):
                ctx.field(name, form[name], register_as=name.replace("augment_", "aug_"), visible=False)
        with gr.Row():
            ctx.add(
                "aug_preview",
                gr.Button(i18n.t("aug.preview"), variant="primary", elem_id="lt-aug-preview"),
                text="aug.preview",
            )
            ctx.add("aug_write", gr.Button(i18n.t("aug.write"), elem_id="lt-aug-write"), text="aug.write")
        ctx.add("aug_error", gr.HTML(elem_id="lt-aug-error"))
        ctx.add("aug_summary", gr.Markdown(elem_id="lt-aug-summary"))
        ctx.add(
            "aug_report",
            gr.Textbox(
                label=i18n.t("aug.report"),
                lines=3,
                max_lines=8,
                interactive=False,
                visible=False,
                elem_id="lt-aug-report",
            ),
            text="aug.report",
        )
        ctx.add(
            "aug_table",
            gr.Dataframe(
                label=i18n.t("aug.table"),
                interactive=False,
                wrap=True,
                visible=False,
                max_height=600,
                elem_id="lt-aug-table",
            ),
            text="aug.table",
        )


PREVIEW = ["data_summary", "data_problems", "example", "data_preview"]


def wire(ctx: AppContext) -> None:
    c = ctx.c
    ctx.listen(
        [c["dataset"].change, c["dataset_dir"].change, ctx.page.load],
        placeholder_panel,
        inputs=["dataset", "dataset_dir", "lang"],
        outputs=PH_OUTPUTS,
        api_name="find_placeholders",
    )
    ctx.listen(
        c["ph_fill"].click,
        partial(fill_placeholders, ctx),
        inputs=["dataset", "dataset_dir", "ph_name", "ph_author", "ph_other", "lang"],
        outputs=["dataset", "ph_msg"],
        api_name="fill_placeholders",
    )
    data_registry.wire(ctx)
    ctx.listen(
        [c["dataset"].change, c["dataset_format"].change, c["dataset_dir"].change],
        load_preview,
        inputs=["dataset", "dataset_format", "lang", "dataset_dir"],
        outputs=PREVIEW,
        api_name="load_data",
    )
    ctx.listen(
        ctx.page.load,
        partial(refresh, ctx),
        inputs=["dataset", "dataset_format", "lang", "dataset_dir"],
        outputs=["dataset", *PREVIEW],
        api_visibility="private",
    )
    ctx.listen(
        c["example"].change,
        show_example,
        inputs=["dataset", "dataset_format", "example", "dataset_dir"],
        outputs=["data_preview"],
        api_visibility="private",
    )
    ctx.listen(
        c["upload"].upload,
        partial(save_upload, ctx),
        inputs=["upload", "lang"],
        outputs=["dataset", "data_problems"],
        api_name="upload",
    )
    data_lengths.wire(ctx)
    ctx.listen(
        c["use_suggested"].click,
        use_suggested,
        inputs=["suggested", "lang"],
        outputs=["cutoff_len", "length_problems"],
        api_name="use_suggested_cutoff",
    )
    ctx.listen(
        c["aug_generator"].change,
        generator_options,
        inputs=["aug_generator"],
        outputs=["aug_base_url", "aug_api_key_env", "aug_model"],
        api_visibility="private",
    )
    ctx.listen(
        c["aug_preview"].click,
        augment_preview,
        inputs=PREVIEW_INPUTS,
        outputs=AUGMENT_OUTPUTS,
        api_name="augment_preview",
    )
    ctx.listen(
        c["aug_write"].click,
        partial(augment_write, ctx),
        inputs=AUGMENT_INPUTS,
        outputs=["dataset", *AUGMENT_OUTPUTS],
        api_name="augment_write",
    )
