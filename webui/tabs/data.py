"""Data tab: pick or upload a dataset, see its conversations and problems, analyze token lengths."""
from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from core.config import DATASET_FORMATS
from core.data import Dataset, detect_format, load_dataset
from core.errors import UserInputError
from core.presets import DEFAULT_PRESET, preset_values
from webui import i18n
from core.paths import DEMO_DIR, display_path, resolve_dataset
from webui.context import AppContext, error_html, note_html
from webui.plots import histogram_svg
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


@functools.lru_cache(maxsize=16)
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
def load_preview(value: str, fmt: str, lang: str) -> tuple[str, str, Any, Any]:
    """(summary, problems box, example slider, first conversation) for the chosen dataset."""
    try:
        dataset = load(value, fmt)
    except UserInputError as err:
        return "", error_html(i18n.t("data.problems", lang), str(err)), gr.update(value=1, visible=False), \
            gr.update(value=[], visible=False)
    count = len(dataset.conversations)
    turns = sum(len(c) for c in dataset.conversations) / max(count, 1)
    summary = i18n.t("data.loaded", lang, name=Path(dataset.path).name, format=dataset.format,
                     count=count, turns=f"{turns:.1f}")
    return summary, "", gr.update(minimum=1, maximum=max(count, 2), value=1, visible=True), \
        gr.update(value=dataset.conversations[0], visible=True)


def show_example(value: str, fmt: str, number: float) -> list[dict[str, str]]:
    try:
        conversations = load(value, fmt).conversations
    except UserInputError:
        return []
    index = min(max(int(number or 1), 1), len(conversations)) - 1
    return conversations[index]


def save_upload(ctx: AppContext, file: str | None, lang: str) -> tuple[Any, str]:
    """Copy an upload under <runs>/uploads (gradio's temp copy may vanish) and select it."""
    if not file:
        return gr.skip(), ""
    source = Path(file)
    folder = ctx.runs_dir / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    # One folder per content hash keeps the user's file name (error messages name it) while two
    # different files of the same name never overwrite each other.
    target = folder / hashlib.sha256(source.read_bytes()).hexdigest()[:12] / source.name
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, target)
    value = display_path(target)
    choices = dataset_choices(ctx)
    return gr.update(choices=sorted(set(choices) | {value}), value=value), \
        note_html(i18n.t("data.upload_saved", lang, path=value))


def analyze(value: str, fmt: str, model: str, cutoff_len: float, system_prompt: str,
            train_on_prompt: bool, lang: str) -> tuple[str, str, int | None, Any, str]:
    """(numbers, histogram, suggested cutoff, 'use it' button, problems) from core.lengths."""
    from core.lengths import analyze_file

    try:
        report = analyze_file(resolve_dataset(value), model=(model or "default").strip(),
                              cutoff_len=1024 if cutoff_len is None else int(cutoff_len), dataset_format=fmt or "auto",
                              system_prompt=system_prompt or "", train_on_prompt=bool(train_on_prompt))
    except UserInputError as err:
        return "", "", None, gr.update(interactive=False), error_html(i18n.t("data.problems", lang), str(err))
    except Exception as err:  # noqa: BLE001 - a model that cannot load: say so in the page, no traceback
        return "", "", None, gr.update(interactive=False), error_html(i18n.t("data.problems", lang),
                                                                      f"{type(err).__name__}: {err}")
    info = report.to_dict()
    svg = histogram_svg(info["histogram"]["edges"], info["histogram"]["counts"], info["current_cutoff"],
                        info["suggested_cutoff"], lang)
    button = gr.update(interactive=True, value=i18n.t("data.use_suggested_n", lang, value=info["suggested_cutoff"]))
    return report_markdown(info, lang), svg, info["suggested_cutoff"], button, ""


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


def use_suggested(suggested: int | None, lang: str) -> tuple[Any, str]:
    if not suggested:
        return gr.skip(), note_html(i18n.t("data.no_suggestion", lang))
    return int(suggested), note_html(i18n.t("data.suggested_set", lang, value=int(suggested)))


# ---------------------------------------------------------------------------------------- layout
def build(ctx: AppContext) -> None:
    preset = preset_values(DEFAULT_PRESET)
    c = ctx.c
    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row(equal_height=True):
                c["dataset"] = ctx.text(gr.Dropdown(
                    choices=dataset_choices(ctx), value=display_path(preset.get("dataset", "")),
                    allow_custom_value=True, label=i18n.t("data.dataset"), info=i18n.t("data.dataset.info"),
                    scale=3, elem_id="lt-dataset"), "data.dataset")
                c["dataset_format"] = ctx.field(gr.Dropdown(
                    choices=list(DATASET_FORMATS), value=preset.get("dataset_format", "auto"),
                    label=i18n.field_label("dataset_format"), info=i18n.field_info("dataset_format"),
                    scale=1, min_width=140), "dataset_format")
            c["upload"] = ctx.text(gr.File(label=i18n.t("data.upload"), file_types=[".json", ".jsonl"],
                                           type="filepath", height=130, elem_id="lt-upload"), "data.upload")
            c["data_summary"] = gr.Markdown(elem_id="lt-data-summary")
            c["data_problems"] = gr.HTML(elem_id="lt-data-problems")
            count = count_examples(preset.get("dataset", ""), preset.get("dataset_format", "auto")) or 2
            c["example"] = ctx.text(gr.Slider(1, max(count, 2), value=1, step=1, label=i18n.t("data.example"),
                                              elem_id="lt-example"), "data.example")
            c["data_preview"] = ctx.text(gr.Chatbot(label=i18n.t("data.preview"), height=380,
                                                    elem_id="lt-data-preview"), "data.preview")
        with gr.Column(scale=4):
            ctx.text(gr.Markdown(i18n.t("data.lengths")), "data.lengths")
            ctx.text(gr.Markdown(i18n.t("data.analysis_hint")), "data.analysis_hint")
            with gr.Row():
                c["analyze"] = ctx.text(gr.Button(i18n.t("data.analyze"), variant="primary",
                                                  elem_id="lt-analyze"), "data.analyze")
                c["use_suggested"] = ctx.text(gr.Button(i18n.t("data.use_suggested"), interactive=False,
                                                        elem_id="lt-use-suggested"), "data.use_suggested")
            c["length_problems"] = gr.HTML()
            c["histogram"] = gr.HTML(elem_id="lt-histogram")
            c["length_report"] = gr.Markdown(elem_id="lt-length-report")
            c["suggested"] = gr.State(None)


def wire(ctx: AppContext) -> None:
    c = ctx.c
    preview_outputs = [c["data_summary"], c["data_problems"], c["example"], c["data_preview"]]
    gr.on([c["dataset"].change, c["dataset_format"].change], load_preview,
          inputs=[c["dataset"], c["dataset_format"], c["lang"]], outputs=preview_outputs, api_name="load_data")
    c["example"].change(show_example, inputs=[c["dataset"], c["dataset_format"], c["example"]],
                        outputs=c["data_preview"], api_visibility="private")
    c["upload"].upload(lambda file, lang: save_upload(ctx, file, lang), inputs=[c["upload"], c["lang"]],
                       outputs=[c["dataset"], c["data_problems"]], api_name="upload")
    c["analyze"].click(analyze, inputs=[c["dataset"], c["dataset_format"], c["model"], c["cutoff_len"],
                                        c["system_prompt"], c["train_on_prompt"], c["lang"]],
                       outputs=[c["length_report"], c["histogram"], c["suggested"], c["use_suggested"],
                                c["length_problems"]], api_name="analyze_lengths")
    c["use_suggested"].click(use_suggested, inputs=[c["suggested"], c["lang"]],
                             outputs=[c["cutoff_len"], c["length_problems"]], api_name="use_suggested_cutoff")


def on_load(ctx: AppContext):
    """Page (re)load: fresh dataset choices and the preview of the selected dataset."""
    c = ctx.c

    def refresh(value, fmt, lang):
        return (gr.update(choices=sorted(set(dataset_choices(ctx)) | ({value} if value else set()))),
                *load_preview(value, fmt, lang))

    return refresh, [c["dataset"], c["dataset_format"], c["lang"]], [c["dataset"], *[
        c["data_summary"], c["data_problems"], c["example"], c["data_preview"]]]
