"""Chart data for the page: loss and probe-recall frames for gr.LinePlot, the token-length histogram as SVG.

The histogram is drawn here (inline SVG) rather than with a plotting library because it needs two
labelled vertical markers, the current and the suggested cutoff, which gr.BarPlot cannot draw.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from core.runs import loss_points
from webui import i18n

RECALL_SERIES = ("tuned", "base")  # the adapter's probe scorings, and the base model's as a reference line


def _typed(rows: list[dict[str, Any]], y: str, colour: str) -> pd.DataFrame:
    """Explicit dtypes: an empty frame would otherwise hold 'object' columns, which gradio sends as
    nominal data, and the chart would then draw steps and values as categories."""
    frame = pd.DataFrame(rows, columns=["step", y, colour])
    return frame.astype({"step": "int64", y: "float64", colour: "str"})


def loss_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """step, loss, series ('train' | 'eval'): what the train tab's LinePlot draws."""
    return _typed(loss_points(events), "loss", "series")


def recall_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """step, recall, series: the adapter's probe recall at each scoring ('tuned'; a resumed run's
    later scoring of a step wins) and the base model's, scored once before training, as a flat
    'base' line over the same steps."""
    probes = [e for e in events if e["type"] == "probe"]
    tuned = {e["step"]: e["recall"] for e in probes if e["model"] == "tuned"}
    rows = [{"step": step, "recall": recall, "series": "tuned"} for step, recall in sorted(tuned.items())]
    base = next((e["recall"] for e in probes if e["model"] == "base"), None)
    if base is not None:
        rows += [{"step": step, "recall": base, "series": "base"} for step in sorted({0, max(tuned, default=0)})]
    return _typed(rows, "recall", "series")


def name_every_series(frame: pd.DataFrame, series: tuple[str, ...] = ("train", "eval")) -> pd.DataFrame:
    """The frame (step, value, series) plus, for each series without a point yet, one row with no
    step and no value.

    gradio 6's LinePlot takes its colour scale from the series in the first data it draws and later
    only swaps the data, so a series that appears later (eval, at the first eval step) would be drawn
    without a colour: invisible. Naming every series from the start keeps each line in its colour
    and puts all of them in the legend; the chart does not draw a row without a step. (step becomes
    the nullable Int64 for that row.)
    """
    step, value, colour = frame.columns
    missing = [name for name in series if name not in set(frame[colour])]
    if not missing:
        return frame
    empty = pd.DataFrame(
        {step: pd.array([None] * len(missing), dtype="Int64"), value: [float("nan")] * len(missing), colour: missing}
    )
    return pd.concat([frame.astype({step: "Int64"}), empty], ignore_index=True)


def overlay_frame(curves: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Train-loss curves of several runs in one frame, coloured by run name (eval as 'name (eval)')."""
    rows = []
    for name, events in curves.items():
        for point in loss_points(events):
            label = name if point["series"] == "train" else f"{name} (eval)"
            rows.append({"step": point["step"], "loss": point["loss"], "run": label})
    return _typed(rows, "loss", "run")


def histogram_svg(
    edges: list[float],
    counts: list[int],
    current: int | None,
    suggested: int | None,
    lang: str = "en",
    width: int = 620,
    height: int = 220,
) -> str:
    """Bars of examples per token-length bin, with the current and suggested cutoff as markers."""
    if not counts:
        return ""
    left, right, top, bottom = 44, 16, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = max(edges[-1], suggested or 0) * 1.05 or 1.0
    y_max = max(counts) or 1

    def x(value: float) -> float:
        return left + plot_w * min(value, x_max) / x_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="lt-hist" role="img" style="width:100%;max-width:{width}px;font:12px sans-serif">'
    ]
    for lo, hi, count in zip(edges[:-1], edges[1:], counts):
        bar_h = plot_h * count / y_max
        parts.append(
            f'<rect x="{x(lo):.1f}" y="{top + plot_h - bar_h:.1f}" width="{max(x(hi) - x(lo) - 1, 1):.1f}" '
            f'height="{bar_h:.1f}" fill="#7c9cd6"><title>{lo:.0f}-{hi:.0f}: {count}</title></rect>'
        )
    axis_y = top + plot_h
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#888"/>')
    for tick in _ticks(x_max):
        parts.append(f'<text x="{x(tick):.1f}" y="{axis_y + 14}" text-anchor="middle" fill="#666">{tick:g}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" fill="#666">{y_max}</text>')
    parts.append(f'<text x="{left - 6}" y="{axis_y}" text-anchor="end" fill="#666">0</text>')
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle" fill="#444">'
        f"{html.escape(i18n.t('data.hist.axis', lang))}</text>"
    )
    markers = [
        (current, "#d9534f", "4 3", i18n.t("data.hist.current", lang, value=current), 12),
        (suggested, "#2e9e5b", "", i18n.t("data.hist.suggested", lang, value=suggested), 24),
    ]
    for value, colour, dash, label, label_y in markers:
        if value is None:
            continue
        beyond = value > x_max  # the current cutoff can be far right of every example
        mx = x(value)
        parts.append(
            f'<line x1="{mx:.1f}" y1="{top - 4}" x2="{mx:.1f}" y2="{axis_y}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="{dash}"/>'
        )
        anchor = "end" if mx > left + plot_w * 0.6 else "start"
        dx = -4 if anchor == "end" else 4
        text = f"{label} →" if beyond else label
        parts.append(
            f'<text x="{mx + dx:.1f}" y="{label_y}" text-anchor="{anchor}" fill="{colour}" '
            f'font-weight="bold">{html.escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _ticks(x_max: float) -> list[float]:
    """About five round tick values from 0 to x_max."""
    raw = x_max / 5
    magnitude = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(int(x_max // step) + 1)]
