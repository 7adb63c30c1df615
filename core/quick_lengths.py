"""The quick length analysis: exact counts of a random sample, with the error bounds that sample gives.

A sample of `sample_size` conversations is drawn uniformly WITH replacement from the dataset, so
its lengths are i.i.d. draws from the dataset's own length distribution; each is counted exactly
(ChatEncoder, the trainer's tokenization). How the sample becomes the dataset's numbers:

  percentiles  a .jsonl file: model-assisted. The byte length of EVERY line is known almost for free,
               and token counts follow it closely, so the sample fits tokens ~ a + b * bytes, predicts
               every line, and corrects the predictions' distribution with the sample's own errors
               (a control-variate / difference estimator of the distribution function,
               F(t) = F_sample(t) + c(t) * (F_predicted_all(t) - F_predicted_sample(t)), c(t) the
               variance-minimising coefficient). Whatever the fit, it is unbiased but for O(1/n)
               terms from fitting on the sample: where bytes say little (c -> 0) it falls back to the
               plain sample's distribution, and its stated variance grows accordingly. Interval:
               Woodruff's (F's normal confidence interval at CONFIDENCE, inverted, with F's largest
               variance over that range): asymptotic, not distribution-free, so its coverage is
               checked by replaying many samples (tests, bench/README.md). Either end is unbounded
               where the order-statistic interval below is (too few draws to bound that side).
               Other datasets (read whole anyway, no cheap per-record regressor): the plain sample's
               nearest-rank percentiles with order-statistic confidence intervals: with
               B ~ Binomial(n, q), the sample's l-th and u-th smallest values bracket the dataset's
               nearest-rank q-quantile with probability >= P(l <= B < u) (any distribution, ties
               included); l and u take (1 - CONFIDENCE) / 2 from each tail.
  shares       the DKW inequality (Massart's constant) on the sample: every cutoff's truncated and
               dropped share is within +-sqrt(ln(2 / (1 - CONFIDENCE)) / (2n)) of the dataset's, all
               cutoffs at once.

Means (a regression estimate where bytes are known), the histogram (from the same distribution
estimate), lost answer tokens and padding are point estimates without a bound.

For a .jsonl file only the sampled lines are decoded and parsed (the line positions and lengths come
from one scan of the bytes); any problem in them, and every other kind of dataset, loads the whole
dataset the normal way (core.dataset_info.load_datasets), whose error names every bad record. A
problem in a line the sample did not draw shows in the exact count, not here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

import numpy as np

from core.data import Conversation, detect_format, normalise
from core.dataset_info import load_datasets
from core.errors import UserInputError
from core.lengths import (
    ESTIMATE_MAX_POSITIONS,
    ESTIMATE_MODEL,
    PERCENTILES,
    LengthReport,
    TokenCounts,
    analyze_counts,
    check_options,
    flat_counts,
    model_max_positions,
    tokenizer_max_positions,
)
from core.template import ChatEncoder

QUICK_SAMPLE = 6144  # conversations drawn: seconds on 100k; total p95 standard error ~0.5% there (bench/README.md)
CONFIDENCE = 0.95
SEED = 0
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class Sample:
    conversations: list[Conversation]  # the distinct conversations drawn
    draws: np.ndarray  # int64 [len(conversations)]: how often each was drawn (sums to the sample size)
    population: int  # conversations in the dataset
    chosen: np.ndarray  # int64 [len(conversations)]: their record numbers (0-based, dataset order)
    record_bytes: np.ndarray | None = None  # int64 [population]: each record's line length (.jsonl), else None


def _draw(population: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct indices in dataset order, times each drawn): `size` uniform draws with replacement;
    a dataset no larger than the sample is taken whole, once each (its numbers are then exact)."""
    if population <= size:
        return np.arange(population), np.ones(population, np.int64)
    drawn = np.random.default_rng(seed).integers(0, population, size)
    return np.unique(drawn, return_counts=True)


def _record_lines(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, line numbers) of the lines core.data reads as records: split at b"\\n" (a UTF-8
    newline byte is never part of another character), blank lines skipped as it does; 1-based numbers."""
    data = np.frombuffer(raw, np.uint8)
    newlines = np.flatnonzero(data == ord("\n"))
    starts = np.concatenate([[len(UTF8_BOM) if raw.startswith(UTF8_BOM) else 0], newlines + 1])
    ends = np.concatenate([newlines, [len(raw)]])
    numbers = np.flatnonzero(ends > starts)
    # A record's line starts with "{"; any other line is decoded to ask str.strip() (unicode blanks).
    odd = numbers[data[starts[numbers]] != ord("{")]
    blank = [i for i in odd.tolist() if not raw[starts[i] : ends[i]].decode("utf-8", "replace").strip()]
    numbers = np.setdiff1d(numbers, blank, assume_unique=True)
    return starts[numbers], ends[numbers], numbers + 1


def _sample_jsonl(path: Path, fmt: str, size: int, seed: int) -> Sample | None:
    """Parse only the drawn lines; None where anything is unusual (the full load then reports it)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    starts, ends, numbers = _record_lines(raw)
    if not len(starts):
        return None

    def line(index: int) -> str:
        return raw[starts[index] : ends[index]].decode("utf-8")

    try:
        if fmt == "auto":
            fmt = detect_format(json.loads(line(0)))
            if fmt is None:
                return None
        chosen, draws = _draw(len(starts), size, seed)
        problems: list[str] = []
        conversations = [
            normalise(json.loads(line(index)), fmt, f"line {numbers[index]}", problems) for index in chosen.tolist()
        ]
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if problems:
        return None
    return Sample(conversations, draws, len(starts), chosen, ends - starts)


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
    return Sample([conversations[i] for i in chosen.tolist()], draws, len(conversations), chosen)


# ------------------------------------------------------------------- order-statistic bounds (plain)
def _binomial_cdf(n: int, q: float) -> np.ndarray:
    """[n + 1] P(B <= k) for B ~ Binomial(n, q), from log-probabilities (no scipy: importing
    scipy.stats alone costs a quarter of the quick mode's time budget)."""
    k = np.arange(n + 1)
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(n + 1)])
    pmf = np.exp(log_choose + k * math.log(q) + (n - k) * math.log1p(-q))
    return np.cumsum(pmf) / pmf.sum()


@lru_cache(maxsize=64)  # the same few (n, q) for every column and interval
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


# ------------------------------------------------------------- model-assisted distribution (.jsonl)
def _cdf_on(values: np.ndarray, top: int) -> np.ndarray:
    """[top + 1] share of `values` <= t for t = 0..top."""
    return np.searchsorted(np.sort(values), np.arange(top + 1), side="right") / len(values)


@dataclass
class AssistedCdf:
    """The estimated distribution function of a length over the whole dataset, on t = 0..top."""

    cdf: np.ndarray  # float [top + 1]: estimated share of the dataset's examples with length <= t
    variance: np.ndarray  # float [top + 1]: the estimate's variance at each t (before monotone repair)
    mean: float  # the regression estimate of the dataset's mean length
    n: int  # draws

    def _inverse(self, share: float) -> int | None:
        """The smallest t with F(t) >= share (nearest rank); None past the top."""
        t = int(np.searchsorted(self.cdf, share - 1e-12, side="left"))
        return t if t < len(self.cdf) else None

    def quantile(self, q: float) -> int:
        t = self._inverse(q)
        return len(self.cdf) - 1 if t is None else t

    def interval(self, q: float, confidence: float = CONFIDENCE) -> list[int | None]:
        """Woodruff's interval for the nearest-rank q-quantile: F^-1(q -+ z * se), with se the
        largest standard error over the interval itself (found in a few rounds: in the tails the
        variance at the estimate alone understates it). A side the plain order statistics cannot
        bound at this sample size stays unbounded (None)."""
        z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
        low = high = self.quantile(q)
        for _ in range(3):
            se = math.sqrt(float(self.variance[low : high + 1].max()))
            low = self._inverse(q - z * se)  # F reaches q at `high` already: never None here
            high = self._inverse(q + z * se)
            if high is None:
                break
        rank_low, rank_high = quantile_ranks(self.n, q, confidence)
        return [low if rank_low else None, high if rank_high else None]


def assisted_cdf(values: np.ndarray, sample_x: np.ndarray, population_x: np.ndarray) -> AssistedCdf:
    """F of `values` over the population from i.i.d. draws (values [n], their regressor sample_x [n])
    and the regressor of every member (population_x [N]): the difference estimator described at the
    top, with an ordinary least-squares fit values ~ a + b * x."""
    n = len(values)
    design = np.column_stack([np.ones(n), sample_x]).astype(float)
    (a, b), *_ = np.linalg.lstsq(design, values.astype(float), rcond=None)
    top = 2 * int(values.max()) + 64  # quantiles past twice the longest drawn are left unbounded
    # Whole tokens (rounded: float noise must not move a prediction across an integer t), clipped:
    # past the ends only which side of each t a prediction lies on matters.
    predicted = np.clip(np.rint(a + b * sample_x), -1, top + 1)
    predicted_all = np.clip(np.rint(a + b * population_x), -1, top + 1)
    sample_y, sample_p = _cdf_on(values, top), _cdf_on(predicted, top)
    both = _cdf_on(np.maximum(values, predicted), top)  # 1[y <= t] * 1[p <= t] = 1[max(y, p) <= t]
    var_y, var_p, cov = sample_y * (1 - sample_y), sample_p * (1 - sample_p), both - sample_y * sample_p
    c = np.divide(cov, var_p, out=np.zeros_like(cov), where=var_p > 0)
    estimate = sample_y + c * (_cdf_on(predicted_all, top) - sample_p)
    variance = np.maximum(var_y - c * cov, 0) / n  # Var(1[y <= t] - c * 1[p <= t]) / n at the optimal c
    mean = float(values.mean() + b * (population_x.mean() - sample_x.mean()))
    return AssistedCdf(np.clip(np.sort(estimate), 0, 1), variance, mean, n)


def drawn_counts(encoder: ChatEncoder, sample: Sample) -> TokenCounts:
    """Counts of every draw (a conversation drawn k times counts k times), each distinct one encoded
    once as the exact analysis does (flat chunks: the counts need only lengths and trained masks)."""
    chunks = list(encoder.encode_chunks(sample.conversations))
    lengths = np.concatenate([chunk.lengths for chunk in chunks])  # [distinct]
    trained = np.concatenate([chunk.trained for chunk in chunks])  # [tokens of the distinct ones]
    drawn_lengths = np.repeat(lengths, sample.draws)
    # Each draw's tokens, gathered from its conversation's place in the flat arrays.
    source_start = np.repeat(np.cumsum(lengths) - lengths, sample.draws)
    drawn_start = np.cumsum(drawn_lengths) - drawn_lengths
    positions = np.arange(int(drawn_lengths.sum())) + np.repeat(source_start - drawn_start, drawn_lengths)
    return flat_counts(drawn_lengths, trained[positions])


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
    counts = drawn_counts(encoder, sample)
    drawn, whole = int(sample.draws.sum()), sample.population <= sample_size
    assisted = not whole and sample.record_bytes is not None
    if whole:
        note = f"The whole dataset ({sample.population:,} conversations, no more than the sample size) was counted."
    else:
        epsilon = dkw_epsilon(drawn)
        percentiles = (
            "model-assisted estimates (a fit of tokens to every line's byte length, corrected by the "
            "sample's errors) with Woodruff confidence intervals"
            if assisted
            else "distribution-free confidence intervals from order statistics (binomial ranks)"
        )
        note = (
            f"Quick: {drawn:,} random draws (with replacement) from {sample.population:,} conversations, each "
            f"counted exactly with the model's tokenizer and chat template. Percentiles: {percentiles}, at "
            f"{CONFIDENCE:.0%}. Truncated and dropped shares: within {100 * epsilon:.1f} points of the dataset's at "
            f"{CONFIDENCE:.0%}, all cutoffs at once (DKW inequality). Means, lost answer tokens and padding are "
            f"estimates without a bound."
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
    if whole:
        return report
    report.sample_size = drawn
    report.share_error_pct = round(100 * epsilon, 2)
    values = {"total": counts.total, "prompt": counts.total - counts.supervised, "supervised": counts.supervised}
    if not assisted:
        scale = sample.population / drawn  # the histogram in conversations of the dataset, as its count says
        report.histogram["counts"] = [round(count * scale) for count in report.histogram["counts"]]
        report.intervals = {
            name: {
                f"p{q}": [None if math.isinf(b) else int(b) for b in quantile_interval(column, q / 100)]
                for q in PERCENTILES
            }
            for name, column in values.items()
        }
        return report
    sample_bytes = np.repeat(sample.record_bytes[sample.chosen], sample.draws)  # in counts' order
    for name, column in values.items():
        estimate = assisted_cdf(column, sample_bytes, sample.record_bytes)
        report.summary[name]["mean"] = round(estimate.mean, 1)
        for q in PERCENTILES:
            report.summary[name][f"p{q}"] = estimate.quantile(q / 100)
        report.intervals[name] = {f"p{q}": estimate.interval(q / 100) for q in PERCENTILES}
        if name == "total":
            report.histogram["counts"] = _histogram_counts(estimate, report.histogram["edges"], sample.population)
    return report


def _histogram_counts(estimate: AssistedCdf, edges: list[int], population: int) -> list[int]:
    """Conversations of the dataset in each bin [edges[i], edges[i + 1]), from the estimated F; the
    last bin takes everything from its left edge on."""
    at = np.concatenate([[0.0], estimate.cdf])  # at[t + 1] = F(t), at[0] = F(-1) = 0
    below = at[np.minimum(np.array(edges[:-1]), len(at) - 1)]  # F(edge - 1): share below each bin
    shares = np.diff(np.append(below, 1.0))
    return [round(population * share) for share in shares.tolist()]
