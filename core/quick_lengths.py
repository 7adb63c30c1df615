"""The quick length analysis: exact counts of a random sample, with the error bounds that sample gives.

A sample of `sample_size` conversations is drawn uniformly WITH replacement from the dataset, so
its lengths are i.i.d. draws from the dataset's own length distribution; each is counted exactly
(ChatEncoder, the trainer's tokenization). Two distribution-free bounds then hold, at CONFIDENCE:

  percentiles  order-statistic confidence intervals: with B ~ Binomial(n, q), the sample's l-th and
               u-th smallest values bracket the dataset's nearest-rank q-quantile with probability
               >= P(l <= B < u) (any distribution, ties included); l and u take (1 - CONFIDENCE) / 2
               from each tail.
  shares       the DKW inequality (Massart's constant): every cutoff's truncated and dropped share is
               within +-sqrt(ln(2 / (1 - CONFIDENCE)) / (2n)) of the dataset's, all cutoffs at once.

Means, lost answer tokens and padding are point estimates without a bound.

For a .jsonl file only the sampled lines are parsed (reading all 100k records costs more than
counting a sample); any problem in them, and every other kind of dataset, loads the whole dataset
the normal way (core.dataset_info.load_datasets), whose error names every bad record.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data import Conversation, detect_format, normalise
from core.dataset_info import load_datasets
from core.errors import UserInputError
from core.lengths import (
    ESTIMATE_MAX_POSITIONS,
    ESTIMATE_MODEL,
    PERCENTILES,
    LengthReport,
    analyze_counts,
    check_options,
    exact_counts,
    model_max_positions,
    tokenizer_max_positions,
)
from core.template import ChatEncoder

QUICK_SAMPLE = 8192  # conversations drawn: seconds on 100k, p50/p95 standard error ~1% (bench/README.md)
CONFIDENCE = 0.95
SEED = 0


@dataclass
class Sample:
    conversations: list[Conversation]  # the distinct conversations drawn
    draws: np.ndarray  # int64 [len(conversations)]: how often each was drawn (sums to the sample size)
    population: int  # conversations in the dataset


def _draw(population: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct indices in dataset order, times each drawn): `size` uniform draws with replacement;
    a dataset no larger than the sample is taken whole, once each (its numbers are then exact)."""
    if population <= size:
        return np.arange(population), np.ones(population, np.int64)
    drawn = np.random.default_rng(seed).integers(0, population, size)
    return np.unique(drawn, return_counts=True)


def _sample_jsonl(path: Path, fmt: str, size: int, seed: int) -> Sample | None:
    """Parse only the drawn lines; None where anything is unusual (the full load then reports it)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.split("\n")  # as core.data splits: a JSON string may hold U+2028
    numbers = [number for number, line in enumerate(lines) if line and not line.isspace()]  # = line.strip()
    if not numbers:
        return None
    if fmt == "auto":
        try:
            fmt = detect_format(json.loads(lines[numbers[0]]))
        except json.JSONDecodeError:
            return None
        if fmt is None:
            return None
    chosen, draws = _draw(len(numbers), size, seed)
    problems: list[str] = []
    conversations = []
    for index in chosen.tolist():
        number = numbers[index]
        try:
            record = json.loads(lines[number])
        except json.JSONDecodeError:
            return None
        conversations.append(normalise(record, fmt, f"line {number + 1}", problems))
    return None if problems else Sample(conversations, draws, len(numbers))


def sample_dataset(
    value: str | Path, fmt: str = "auto", dataset_dir: str = "", size: int = QUICK_SAMPLE, seed: int = SEED
) -> Sample:
    """`size` conversations drawn from a dataset (a file, or registered names with dataset_dir)."""
    if size < 1:
        raise UserInputError(f"The quick analysis needs a sample of at least 1 conversation, got {size}")
    path = Path(value)
    if not dataset_dir and path.suffix.lower() == ".jsonl" and path.is_file():
        sample = _sample_jsonl(path, fmt, size, seed)
        if sample is not None:
            return sample
    conversations = load_datasets(str(value), fmt, dataset_dir).conversations
    chosen, draws = _draw(len(conversations), size, seed)
    return Sample([conversations[i] for i in chosen.tolist()], draws, len(conversations))


# ------------------------------------------------------------------------------------ the bounds
def _binomial_cdf(n: int, q: float) -> np.ndarray:
    """[n + 1] P(B <= k) for B ~ Binomial(n, q), from log-probabilities (no scipy: importing
    scipy.stats alone costs a quarter of the quick mode's time budget)."""
    k = np.arange(n + 1)
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(n + 1)])
    pmf = np.exp(log_choose + k * math.log(q) + (n - k) * math.log1p(-q))
    return np.cumsum(pmf) / pmf.sum()


def quantile_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int | None, int | None]:
    """1-based ranks (l, u) of the order statistics that bracket the q-quantile with probability
    >= confidence; None where the sample is too small to bound that side."""
    tail = (1 - confidence) / 2
    cdf = _binomial_cdf(n, q)
    # P(B >= l) >= 1 - tail  <=>  P(B <= l - 1) <= tail: the largest such l.
    low = int(np.searchsorted(cdf, tail, side="right"))  # count of k with P(B <= k) <= tail
    # P(B <= u - 1) >= 1 - tail: the smallest such u.
    high = int(np.searchsorted(cdf, 1 - tail, side="left")) + 1
    return (low if low >= 1 else None), (high if high <= n else None)


def quantile_interval(values: np.ndarray, q: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The distribution-free interval for the population's nearest-rank q-quantile (q in (0, 1))
    from i.i.d. `values`; -inf / inf on a side the sample cannot bound."""
    ordered = np.sort(values)
    low, high = quantile_ranks(len(ordered), q, confidence)
    return (
        float(ordered[low - 1]) if low else -math.inf,
        float(ordered[high - 1]) if high else math.inf,
    )


def dkw_epsilon(n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the DKW band: P(sup |F_n - F| > eps) <= 1 - confidence."""
    return math.sqrt(math.log(2 / (1 - confidence)) / (2 * n))


# ---------------------------------------------------------------------------------- the analysis
def analyze_quick(
    value: str | Path,
    model: str = "default",
    cutoff_len: int = 1024,
    dataset_format: str = "auto",
    system_prompt: str = "",
    train_on_prompt: bool = False,
    batch_size: int = 8,
    target: float = 0.01,
    dataset_dir: str = "",
    sample_size: int | None = None,
    seed: int = SEED,
) -> LengthReport:
    """analyze_file's report from a sample: the model's tokenizer and chat template (as the trainer
    uses them) on `sample_size` random conversations, with the bounds described above."""
    from core.models import load_tokenizer, resolve_model

    check_options(cutoff_len, batch_size, target)
    sample_size = sample_size or QUICK_SAMPLE
    if model.strip() == ESTIMATE_MODEL:
        raise UserInputError("The quick analysis counts with a model's tokenizer: choose a model, not 'tiktoken'.")
    sample = sample_dataset(value, dataset_format, dataset_dir, sample_size, seed)
    source = resolve_model(model)
    encoder = ChatEncoder(load_tokenizer(source), system_prompt, train_on_prompt)
    encoded = encoder.encode(sample.conversations)
    counts = exact_counts([e for e, times in zip(encoded, sample.draws.tolist()) for _ in range(times)])
    drawn, whole = int(sample.draws.sum()), sample.population <= sample_size
    if whole:
        note = f"The whole dataset ({sample.population:,} conversations, no more than the sample size) was counted."
    else:
        epsilon = dkw_epsilon(drawn)
        note = (
            f"Quick: {drawn:,} random draws (with replacement) from {sample.population:,} conversations, each "
            f"counted exactly with the model's tokenizer and chat template. Percentile intervals: {CONFIDENCE:.0%} "
            f"distribution-free confidence intervals from order statistics (binomial ranks). Truncated and "
            f"dropped shares: within {100 * epsilon:.1f} points of the dataset's at {CONFIDENCE:.0%}, all cutoffs at "
            f"once (DKW inequality). Means, lost answer tokens and padding are estimates without a bound."
        )
    max_positions = model_max_positions(source.path) or tokenizer_max_positions(encoder.tokenizer)
    report = analyze_counts(
        counts,
        "exact" if whole else "quick",
        source.path,
        cutoff_len,
        batch_size,
        target,
        max_positions or ESTIMATE_MAX_POSITIONS,
        "trained" if train_on_prompt else "answer",
        note,
        population=sample.population,
    )
    if not whole:
        report.sample_size = drawn
        report.share_error_pct = round(100 * epsilon, 2)
        scale = sample.population / drawn  # the histogram in conversations of the dataset, as its count says
        report.histogram["counts"] = [round(count * scale) for count in report.histogram["counts"]]
        values = {
            "total": counts.total,
            "prompt": counts.total - counts.supervised,
            "supervised": counts.supervised,
        }
        report.intervals = {
            name: {
                f"p{q}": [None if math.isinf(b) else int(b) for b in quantile_interval(column, q / 100)]
                for q in PERCENTILES
            }
            for name, column in values.items()
        }
    return report
