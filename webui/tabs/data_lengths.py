"""The Data tab's token-length panel: the quick numbers at once (core.quick_lengths, a sample counted
exactly), then the exact ones from a background count (core.length_jobs) that a gr.Timer polls, so
a 100k-conversation dataset never holds up the page."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core import length_jobs
from core.dataset_info import page_dataset
from core.errors import UserInputError
from core.lengths import LengthReport
from core.quick_lengths import analyze_quick
from webui import i18n
from webui.context import AppContext, Updates, error_html
from webui.plots import histogram_svg

POLL_INTERVAL_S = 1.0
INPUTS = [
    "dataset",
    "dataset_format",
    "model_name_or_path",
    "cutoff_len",
    "system_prompt",
    "train_on_prompt",
    "lang",
    "dataset_dir",
    "length_job",
]
REPORT = ["length_report", "histogram", "suggested", "use_suggested", "length_problems"]
OUTPUTS = [*REPORT, "length_job", "length_timer", "length_progress"]


def analyze(
    dataset: str,
    dataset_format: str,
    model_name_or_path: str,
    cutoff_len: float,
    system_prompt: str,
    train_on_prompt: bool,
    lang: str,
    dataset_dir: str = "",
    length_job: str = "",
) -> Updates:
    """The quick numbers now, and the exact count started (or joined) in the background."""
    stopped = {"length_job": "", "length_timer": gr.Timer(active=False), "length_progress": ""}
    if length_job:
        length_jobs.cancel(length_job)  # this page's previous dataset or options: nobody waits for it
    try:
        dataset, dataset_dir = page_dataset(dataset, dataset_dir)
        options = {
            "path": dataset,
            "model": (model_name_or_path or "default").strip(),
            "cutoff_len": 1024 if cutoff_len is None else int(cutoff_len),
            "dataset_format": dataset_format or "auto",
            "system_prompt": system_prompt or "",
            "train_on_prompt": bool(train_on_prompt),
            "dataset_dir": dataset_dir,
        }
        quick = analyze_quick(options.pop("path"), **options)
    except UserInputError as err:
        return {**failed(lang, str(err)), **stopped}
    except Exception as err:  # noqa: BLE001 - a model that cannot load: say so in the page, no traceback
        return {**failed(lang, f"{type(err).__name__}: {err}"), **stopped}
    if quick.mode == "exact":  # small enough to count whole
        return {**report_updates(quick, lang), **stopped}
    key = length_jobs.start({"path": dataset, **options})
    return {
        **report_updates(quick, lang),
        "length_job": key,
        "length_timer": gr.Timer(active=True),
        "length_progress": i18n.t("data.exact_running", lang, done=0, total=quick.examples),
    }


def poll(length_job: str, lang: str) -> Updates:
    """The exact count's progress, then its report (and the timer stops)."""
    job = length_jobs.status(length_job) if length_job else None
    if job is None:
        return {"length_timer": gr.Timer(active=False), "length_progress": ""}
    if not job.finished:
        return {"length_progress": i18n.t("data.exact_running", lang, done=job.done, total=job.total)}
    done = {"length_timer": gr.Timer(active=False), "length_progress": ""}
    if job.report is None:
        return {**failed(lang, job.error), **done}
    return {**report_updates(job.report, lang), **done}


def failed(lang: str, detail: str) -> Updates:
    return {
        "length_report": "",
        "histogram": "",
        "suggested": None,
        "use_suggested": gr.update(interactive=False),
        "length_problems": error_html(i18n.t("data.problems", lang), detail),
    }


def report_updates(report: LengthReport, lang: str) -> Updates:
    info = report.to_dict()
    svg = histogram_svg(
        info["histogram"]["edges"], info["histogram"]["counts"], info["current_cutoff"], info["suggested_cutoff"], lang
    )
    button = gr.update(interactive=True, value=i18n.t("data.use_suggested_n", lang, value=info["suggested_cutoff"]))
    return {
        "length_report": report_markdown(info, lang),
        "histogram": svg,
        "suggested": info["suggested_cutoff"],
        "use_suggested": button,
        "length_problems": "",
    }


def report_markdown(info: dict[str, Any], lang: str) -> str:
    lines = [
        i18n.t(
            "data.suggestion",
            lang,
            value=info["suggested_cutoff"],
            current=info["current_cutoff"],
            reason=info.get("reason", ""),
        ),
        "",
        i18n.t("data.stats.header", lang, count=info["examples"]),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in ("total", "prompt", "supervised"):
        s = info["summary"].get(key)
        if s:
            lines.append(
                f"| {i18n.t('data.stats.' + key, lang)} | {s['mean']:.0f} | {s['p50']:.0f} "
                f"| {s['p90']:.0f} | {s['p99']:.0f} | {s['max']:.0f} |"
            )
        ranges = info.get("intervals", {}).get(key)
        if ranges:  # quick: the confidence interval under each percentile
            shown = [
                f"{low if low is not None else '…'}–{high if high is not None else '…'}"
                for low, high in (ranges[p] for p in ("p50", "p90", "p99"))
            ]
            lines.append(f"| ↳ {i18n.t('data.stats.interval', lang)} | | {' | '.join(shown)} | |")
    rows = _candidate_rows(info)
    if rows:
        lines += ["", i18n.t("data.cand.header", lang), "|---:|---:|---:|---:|---:|"]
        for c in rows:
            mark = " **←**" if c["cutoff"] == info["suggested_cutoff"] else ""
            lines.append(
                f"| {c['cutoff']}{mark} | {c['truncated_pct']:.1f}% | {c['dropped_pct']:.1f}% "
                f"| {c['supervised_lost_pct']:.1f}% | {c['padding_waste_pct']:.1f}% |"
            )
    lines += [""] + [f"- ⚠️ {w}" for w in info.get("warnings", [])]
    lines.append(f"\n<sub>{info.get('mode', '')}: {info.get('tokenizer', '')} · {info.get('note', '')}</sub>")
    return "\n".join(lines)


def _candidate_rows(info: dict[str, Any], most: int = 7) -> list[dict[str, Any]]:
    """The candidates nearest the suggestion, plus the current cutoff, in cutoff order."""
    rows = info.get("candidates", [])
    keep = sorted(rows, key=lambda r: abs(r["cutoff"] - info["suggested_cutoff"]))[:most]
    keep += [r for r in rows if r["cutoff"] == info["current_cutoff"] and r not in keep]
    return sorted(keep, key=lambda r: r["cutoff"])


# ---------------------------------------------------------------------------------------- layout
def build(ctx: AppContext) -> None:
    """The components besides the report itself (which data.build lays out): progress, job, timer."""
    ctx.add("length_progress", gr.Markdown(elem_id="lt-length-progress"))
    ctx.add("length_job", gr.State(""))
    ctx.add("length_timer", gr.Timer(POLL_INTERVAL_S, active=False))


def wire(ctx: AppContext) -> None:
    c = ctx.c
    # On choosing or uploading a dataset (the upload selects it), and on Analyze.
    ctx.listen(
        [c["dataset"].change, c["dataset_format"].change, c["analyze"].click],
        analyze,
        inputs=INPUTS,
        outputs=OUTPUTS,
        api_name="analyze_lengths",
        trigger_mode="always_last",
    )
    ctx.listen(
        c["length_timer"].tick,
        poll,
        inputs=["length_job", "lang"],
        outputs=[*REPORT, "length_timer", "length_progress"],
        api_visibility="private",
    )
