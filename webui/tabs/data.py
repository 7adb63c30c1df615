"""Data tab: pick or upload a dataset, see its conversations and problems, analyze token lengths."""
from __future__ import annotations

import hashlib
import json
import shutil
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import gradio as gr

from core.data import Dataset, detect_format, load_dataset
from core.errors import UserInputError
from core.lengths import analyze_file
from core.paths import DEMO_DIR, display_path, resolve_dataset
from core.presets import DEFAULT_PRESET
from webui import i18n
from webui.context import AppContext, Updates, error_html, note_html
from webui.plots import histogram_svg
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
def _load_cached(path: str, fmt: str, mtime: float, size: int) -> Dataset:
    return load_dataset(path, fmt)


def load(value: str, fmt: str = "auto") -> Dataset:
    """load_dataset, cached until the file changes (the train tab re-reads it on every edit)."""
    path = resolve_dataset(value)
    if not path.is_file():
        raise UserInputError(f"Dataset file not found: {display_path(path)}")
    stat = path.stat()
    return _load_cached(str(path), fmt or "auto", stat.st_mtime, stat.st_size)


def count_examples(value: str, fmt: str = "auto") -> int | None:
    try:
        return len(load(value, fmt).conversations)
    except UserInputError:
        return None


# ------------------------------------------------------------------------------------- handlers
def load_preview(dataset: str, dataset_format: str, lang: str) -> Updates:
    """The summary, problems, example slider and first conversation of the chosen dataset."""
    try:
        loaded = load(dataset, dataset_format)
    except UserInputError as err:
        return {"data_summary": "", "data_problems": error_html(i18n.t("data.problems", lang), str(err)),
                "example": gr.update(value=1, visible=False), "data_preview": gr.update(value=[], visible=False)}
    count = len(loaded.conversations)
    turns = sum(len(c) for c in loaded.conversations) / max(count, 1)
    summary = i18n.t("data.loaded", lang, name=Path(loaded.path).name, format=loaded.format,
                     count=count, turns=f"{turns:.1f}")
    return {"data_summary": summary, "data_problems": "",
            "example": gr.update(minimum=1, maximum=max(count, 2), value=1, visible=True),
            "data_preview": gr.update(value=loaded.conversations[0], visible=True)}


def refresh(ctx: AppContext, dataset: str, dataset_format: str, lang: str) -> Updates:
    """Page (re)load: fresh dataset choices (uploads since the app was built) and the preview."""
    choices = sorted(set(dataset_choices(ctx)) | ({dataset} if dataset else set()))
    return {"dataset": gr.update(choices=choices), **load_preview(dataset, dataset_format, lang)}


def show_example(dataset: str, dataset_format: str, example: float) -> Updates:
    try:
        conversations = load(dataset, dataset_format).conversations
    except UserInputError:
        return {"data_preview": []}
    index = min(max(int(example or 1), 1), len(conversations)) - 1
    return {"data_preview": conversations[index]}


def save_upload(ctx: AppContext, upload: str | None, lang: str) -> Updates:
    """Copy an upload under <runs>/uploads (gradio's temp copy may vanish) and select it."""
    if not upload:
        return {"data_problems": ""}
    source = Path(upload)
    folder = ctx.runs_dir / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    # One folder per content hash keeps the user's file name (error messages name it) while two
    # different files of the same name never overwrite each other.
    target = folder / hashlib.sha256(source.read_bytes()).hexdigest()[:12] / source.name
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, target)
    value = display_path(target)
    return {"dataset": gr.update(choices=sorted(set(dataset_choices(ctx)) | {value}), value=value),
            "data_problems": note_html(i18n.t("data.upload_saved", lang, path=value))}


def analyze(dataset: str, dataset_format: str, model_name_or_path: str, cutoff_len: float, system_prompt: str,
            train_on_prompt: bool, lang: str) -> Updates:
    """Token-length numbers, histogram and suggested cutoff from core.lengths."""
    failed = {"length_report": "", "histogram": "", "suggested": None, "use_suggested": gr.update(interactive=False)}
    try:
        report = analyze_file(resolve_dataset(dataset), model=(model_name_or_path or "default").strip(),
                              cutoff_len=1024 if cutoff_len is None else int(cutoff_len),
                              dataset_format=dataset_format or "auto", system_prompt=system_prompt or "",
                              train_on_prompt=bool(train_on_prompt))
    except UserInputError as err:
        return {**failed, "length_problems": error_html(i18n.t("data.problems", lang), str(err))}
    except Exception as err:  # noqa: BLE001 - a model that cannot load: say so in the page, no traceback
        return {**failed, "length_problems": error_html(i18n.t("data.problems", lang), f"{type(err).__name__}: {err}")}
    info = report.to_dict()
    svg = histogram_svg(info["histogram"]["edges"], info["histogram"]["counts"], info["current_cutoff"],
                        info["suggested_cutoff"], lang)
    button = gr.update(interactive=True, value=i18n.t("data.use_suggested_n", lang, value=info["suggested_cutoff"]))
    return {"length_report": report_markdown(info, lang), "histogram": svg, "suggested": info["suggested_cutoff"],
            "use_suggested": button, "length_problems": ""}


def report_markdown(info: dict[str, Any], lang: str) -> str:
    lines = [i18n.t("data.suggestion", lang, value=info["suggested_cutoff"], current=info["current_cutoff"],
                    reason=info.get("reason", "")), "", i18n.t("data.stats.header", lang, count=info["examples"]),
             "|---|---:|---:|---:|---:|---:|"]
    for key in ("total", "prompt", "supervised"):
        s = info["summary"].get(key)
        if s:
            lines.append(f"| {i18n.t('data.stats.' + key, lang)} | {s['mean']:.0f} | {s['p50']:.0f} "
                         f"| {s['p90']:.0f} | {s['p99']:.0f} | {s['max']:.0f} |")
    rows = _candidate_rows(info)
    if rows:
        lines += ["", i18n.t("data.cand.header", lang), "|---:|---:|---:|---:|---:|"]
        for c in rows:
            mark = " **←**" if c["cutoff"] == info["suggested_cutoff"] else ""
            lines.append(f"| {c['cutoff']}{mark} | {c['truncated_pct']:.1f}% | {c['dropped_pct']:.1f}% "
                         f"| {c['supervised_lost_pct']:.1f}% | {c['padding_waste_pct']:.1f}% |")
    lines += [""] + [f"- ⚠️ {w}" for w in info.get("warnings", [])]
    lines.append(f"\n<sub>{info.get('mode', '')}: {info.get('tokenizer', '')} · {info.get('note', '')}</sub>")
    return "\n".join(lines)


def _candidate_rows(info: dict[str, Any], most: int = 7) -> list[dict[str, Any]]:
    """The candidates nearest the suggestion, plus the current cutoff, in cutoff order."""
    rows = info.get("candidates", [])
    keep = sorted(rows, key=lambda r: abs(r["cutoff"] - info["suggested_cutoff"]))[:most]
    keep += [r for r in rows if r["cutoff"] == info["current_cutoff"] and r not in keep]
    return sorted(keep, key=lambda r: r["cutoff"])


def use_suggested(suggested: int | None, lang: str) -> Updates:
    if not suggested:
        return {"length_problems": note_html(i18n.t("data.no_suggestion", lang))}
    return {"cutoff_len": int(suggested),
            "length_problems": note_html(i18n.t("data.suggested_set", lang, value=int(suggested)))}


# ---------------------------------------------------------------------------------------- layout
def build(ctx: AppContext) -> None:
    form = preset_form(DEFAULT_PRESET)
    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row(equal_height=True):
                ctx.field("dataset", form["dataset"], component=gr.Dropdown, choices=dataset_choices(ctx),
                          allow_custom_value=True, scale=3)
                ctx.field("dataset_format", form["dataset_format"], scale=1, min_width=140)
            ctx.add("upload", gr.File(label=i18n.t("data.upload"), file_types=[".json", ".jsonl"], type="filepath",
                                      height=130, elem_id="lt-upload"), text="data.upload")
            ctx.add("data_summary", gr.Markdown(elem_id="lt-data-summary"))
            ctx.add("data_problems", gr.HTML(elem_id="lt-data-problems"))
            count = count_examples(form["dataset"], form["dataset_format"]) or 2
            ctx.add("example", gr.Slider(1, max(count, 2), value=1, step=1, label=i18n.t("data.example"),
                                         elem_id="lt-example"), text="data.example")
            ctx.add("data_preview", gr.Chatbot(label=i18n.t("data.preview"), height=380, elem_id="lt-data-preview"),
                    text="data.preview")
        with gr.Column(scale=4):
            ctx.text(gr.Markdown(i18n.t("data.lengths")), "data.lengths")
            ctx.text(gr.Markdown(i18n.t("data.analysis_hint")), "data.analysis_hint")
            with gr.Row():
                ctx.add("analyze", gr.Button(i18n.t("data.analyze"), variant="primary", elem_id="lt-analyze"),
                        text="data.analyze")
                ctx.add("use_suggested", gr.Button(i18n.t("data.use_suggested"), interactive=False,
                                                   elem_id="lt-use-suggested"), text="data.use_suggested")
            ctx.add("length_problems", gr.HTML())
            ctx.add("histogram", gr.HTML(elem_id="lt-histogram"))
            ctx.add("length_report", gr.Markdown(elem_id="lt-length-report"))
            ctx.add("suggested", gr.State(None))


PREVIEW = ["data_summary", "data_problems", "example", "data_preview"]


def wire(ctx: AppContext) -> None:
    c = ctx.c
    ctx.listen([c["dataset"].change, c["dataset_format"].change], load_preview,
               inputs=["dataset", "dataset_format", "lang"], outputs=PREVIEW, api_name="load_data")
    ctx.listen(ctx.page.load, partial(refresh, ctx), inputs=["dataset", "dataset_format", "lang"],
               outputs=["dataset", *PREVIEW], api_visibility="private")
    ctx.listen(c["example"].change, show_example, inputs=["dataset", "dataset_format", "example"],
               outputs=["data_preview"], api_visibility="private")
    ctx.listen(c["upload"].upload, partial(save_upload, ctx), inputs=["upload", "lang"],
               outputs=["dataset", "data_problems"], api_name="upload")
    ctx.listen(c["analyze"].click, analyze,
               inputs=["dataset", "dataset_format", "model_name_or_path", "cutoff_len", "system_prompt",
                       "train_on_prompt", "lang"],
               outputs=["length_report", "histogram", "suggested", "use_suggested", "length_problems"],
               api_name="analyze_lengths")
    ctx.listen(c["use_suggested"].click, use_suggested, inputs=["suggested", "lang"],
               outputs=["cutoff_len", "length_problems"], api_name="use_suggested_cutoff")
