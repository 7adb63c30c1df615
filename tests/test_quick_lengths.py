"""The quick length analysis (core.quick_lengths): its stated bounds hold and shrink with the sample."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from core.data import load_dataset
from core.errors import UserInputError
from core.lengths import PERCENTILES, analyze_file, exact_counts, main
from core.quick_lengths import (
    analyze_quick,
    assisted_cdf,
    dkw_epsilon,
    drawn_counts,
    quantile_interval,
    quantile_ranks,
    sample_dataset,
)
from core.template import ChatEncoder
from tests.conftest import write_jsonl


def varied_records(count: int, seed: int = 1) -> list[dict]:
    """Conversations of very different lengths (1-3 exchanges, long-tailed replies)."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        messages = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            words = max(1, int(rng.lognormvariate(2.5, 0.8)))
            messages += [
                {"role": "user", "content": " ".join(rng.choice("abcde") * 3 for _ in range(rng.randint(1, 8)))},
                {
                    "role": "assistant",
                    "content": " ".join(rng.choice(("yes", "no", "item", "42")) for _ in range(words)),
                },
            ]
        records.append({"messages": messages})
    return records


# ---------------------------------------------------------------------------------- the statistics
def test_order_statistic_interval_covers_a_known_quantile_as_stated():
    # A discrete distribution with ties (the hard case for order statistics): lengths 10..59 with
    # weights 1..50. Its nearest-rank quantiles are known exactly; draw many samples and count
    # how often each stated 95% interval holds the true value.
    values = np.arange(10, 60)
    probabilities = np.arange(1, 51) / np.arange(1, 51).sum()
    cdf = np.cumsum(probabilities)
    rng = np.random.default_rng(0)
    for q in (0.5, 0.95):
        true = values[np.searchsorted(cdf, q - 1e-12)]  # inf{x: F(x) >= q}
        held = 0
        for _ in range(400):
            low, high = quantile_interval(rng.choice(values, 300, p=probabilities), q)
            held += low <= true <= high
        assert held / 400 >= 0.93  # stated: >= 95%; 400 trials leave ~1% of sampling noise


def test_the_bounds_shrink_with_the_sample():
    rng = np.random.default_rng(1)
    population = rng.lognormal(5, 0.6, 200_000).astype(int)
    widths = []
    for n in (200, 2_000, 20_000):
        low, high = quantile_interval(rng.choice(population, n), 0.95)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0
    assert dkw_epsilon(200) > dkw_epsilon(2_000) > dkw_epsilon(20_000)
    assert dkw_epsilon(8192) == pytest.approx(np.sqrt(np.log(40) / (2 * 8192)))
    # Too few draws to bound the 99th percentile from above: said, not made up.
    assert quantile_ranks(50, 0.99)[1] is None and quantile_ranks(50, 0.5) == (18, 33)


def synthetic_population(related: bool, size: int = 10_000, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, line bytes) of a long-tailed population: tokens ~ bytes / 3.5 with a few percent of
    noise (related), or bytes drawn independently of the tokens (a useless regressor)."""
    rng = np.random.default_rng(seed)
    line_bytes = rng.lognormal(6.5, 0.7, size).astype(np.int64) + 40
    tokens = np.rint(line_bytes / 3.5 * rng.lognormal(0, 0.06, size)).astype(np.int64) + 12
    return tokens, (line_bytes if related else rng.permutation(line_bytes))


def replay_coverage(tokens: np.ndarray, line_bytes: np.ndarray, draws: int, trials: int) -> dict[float, tuple]:
    """q -> (share of trials whose interval held the true nearest-rank quantile, mean relative width,
    the plain order-statistic interval's mean relative width)."""
    rng = np.random.default_rng(7)
    quantiles = (0.5, 0.9, 0.95, 0.99)
    true = {q: int(np.percentile(tokens, 100 * q, method="inverted_cdf")) for q in quantiles}
    held, widths, plain = ({q: [] for q in quantiles} for _ in range(3))
    for _ in range(trials):
        drawn = rng.integers(0, len(tokens), draws)
        estimate = assisted_cdf(tokens[drawn], line_bytes[drawn], line_bytes)
        for q in quantiles:
            low, high = estimate.interval(q)
            assert low is not None and high is not None and low <= estimate.quantile(q) <= high
            held[q].append(low <= true[q] <= high)
            widths[q].append((high - low) / true[q])
            plain_low, plain_high = quantile_interval(tokens[drawn], q)
            plain[q].append((plain_high - plain_low) / true[q])
    return {q: (float(np.mean(held[q])), float(np.mean(widths[q])), float(np.mean(plain[q]))) for q in quantiles}


def test_the_model_assisted_bound_holds_and_is_tighter_when_bytes_predict_tokens():
    tokens, line_bytes = synthetic_population(related=True)
    for q, (held, width, plain_width) in replay_coverage(tokens, line_bytes, 2000, 150).items():
        assert held >= 0.9, q  # stated: 95%; 150 trials leave ~2% of sampling noise
        assert width < 0.7 * plain_width, q  # the point of the regressor: a much narrower interval


def test_the_model_assisted_bound_stays_honest_when_bytes_say_nothing():
    tokens, line_bytes = synthetic_population(related=False)
    for q, (held, width, plain_width) in replay_coverage(tokens, line_bytes, 2000, 150).items():
        assert held >= 0.9, q
        assert width > 0.75 * plain_width, q  # no information, no (false) precision


def test_the_model_assisted_estimate_is_exact_when_bytes_are_the_tokens():
    # A perfect regressor: the predictions are the dataset's lengths, so F is known exactly.
    tokens, _ = synthetic_population(related=True)
    drawn = np.random.default_rng(3).integers(0, len(tokens), 500)
    estimate = assisted_cdf(tokens[drawn], tokens[drawn] * 4, tokens * 4)
    for q in (0.5, 0.9, 0.99):
        assert estimate.quantile(q) == int(np.percentile(tokens, 100 * q, method="inverted_cdf"))
    assert estimate.mean == pytest.approx(tokens.mean())


# ------------------------------------------------------------------ against the exact analysis
@pytest.fixture(scope="module")
def population(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("quick") / "varied.jsonl", varied_records(3000))


@pytest.mark.parametrize("kind", ["jsonl", "json"])  # model-assisted (line bytes known), order statistics
def test_quick_lies_within_its_stated_bounds_of_the_exact_run(population, tiny_model_dir, kind, tmp_path):
    exact = analyze_file(population, model=str(tiny_model_dir), cutoff_len=64)
    data = population
    if kind == "json":
        data = tmp_path / "varied.json"
        data.write_text(json.dumps(varied_records(3000)))
    widths = []
    for size in (300, 1500):
        quick = analyze_quick(data, model=str(tiny_model_dir), cutoff_len=64, sample_size=size)
        assert (quick.mode, quick.examples, quick.sample_size) == ("quick", 3000, size)
        assert quick.summary["total"]["count"] == size
        for name in ("total", "prompt", "supervised"):
            for q in PERCENTILES:
                low, high = quick.intervals[name][f"p{q}"]
                true = exact.summary[name][f"p{q}"]
                assert (low is None or low <= true) and (high is None or true <= high), (size, name, q)
                assert (low is None or low <= quick.summary[name][f"p{q}"]) and (
                    high is None or quick.summary[name][f"p{q}"] <= high
                )
        exact_rows = {row["cutoff"]: row for row in exact.candidates}
        for row in quick.candidates:
            if row["cutoff"] in exact_rows:
                for share in ("truncated_pct", "dropped_pct"):
                    assert abs(row[share] - exact_rows[row["cutoff"]][share]) <= quick.share_error_pct + 0.05
        low, high = quick.intervals["total"]["p95"]
        widths.append(high - low)
        assert sum(quick.histogram["counts"]) == pytest.approx(3000, abs=len(quick.histogram["counts"]))
        method = "Woodruff" if kind == "jsonl" else "order statistics"
        assert "Quick:" in quick.note and method in quick.note and "DKW" in quick.note
        assert "interval" in quick.table()
    assert widths[1] < widths[0]


def test_a_dataset_no_larger_than_the_sample_is_counted_whole(population, tiny_model_dir):
    exact = analyze_file(population, model=str(tiny_model_dir))
    whole = analyze_quick(population, model=str(tiny_model_dir), sample_size=3000)
    assert whole.mode == "exact" and whole.intervals == {} and whole.sample_size == 0
    assert whole.summary == exact.summary and whole.candidates == exact.candidates


def test_the_line_sampler_draws_what_the_full_load_draws(tmp_path):
    records = varied_records(400, seed=3)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) + ("\n" if i % 7 == 0 else "") for i, r in enumerate(records)) + "\n")
    whole = tmp_path / "d.json"  # a .json file is read whole, then drawn from
    whole.write_text(json.dumps(records))
    by_lines, by_load = sample_dataset(jsonl, size=100, seed=5), sample_dataset(whole, size=100, seed=5)
    assert by_lines.population == by_load.population == 400
    assert by_lines.conversations == by_load.conversations
    assert by_lines.draws.tolist() == by_load.draws.tolist() and by_lines.draws.sum() == 100


def test_the_line_index_reads_lines_as_the_full_loader_does(tmp_path):
    records = varied_records(60, seed=4)
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    # A BOM, CRLF endings, blank and whitespace-only lines (a no-break space too), no final newline.
    text = "\ufeff" + "\r\n".join(lines[:20]) + "\n\n \t\n\u00a0\n" + "\n".join(lines[20:])
    path = tmp_path / "odd.jsonl"
    path.write_bytes(text.encode("utf-8"))
    sample = sample_dataset(path, size=50, seed=1)
    assert sample.population == 60 and sample.draws.sum() == 50 and sample.record_bytes is not None
    whole = sample_dataset(path, size=60)  # no larger than the sample: every line once
    assert whole.conversations == load_dataset(path).conversations
    sizes = [len(line.encode()) + (1 if i < 19 else 0) for i, line in enumerate(lines)]  # + the "\r"
    assert whole.record_bytes.tolist() == sizes


def test_a_conversation_drawn_twice_counts_twice(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", varied_records(100, seed=5))
    sample = sample_dataset(path, size=99, seed=2)
    assert sample.draws.max() > 1  # 99 draws from 100: repeats for sure
    encoder = ChatEncoder(tiny_tokenizer)
    counts = drawn_counts(encoder, sample)
    one_by_one = exact_counts(
        [e for e, times in zip(encoder.encode(sample.conversations), sample.draws.tolist()) for _ in range(times)]
    )
    for name in ("total", "supervised", "first_trained", "trained_at"):
        assert np.array_equal(getattr(counts, name), getattr(one_by_one, name)), name


def test_a_bad_record_gives_the_full_loaders_message(tmp_path, tiny_model_dir):
    records = varied_records(50)
    for index in range(0, 50, 5):  # one in five: some are surely drawn
        records[index] = {"messages": [{"role": "user", "content": "no reply"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(UserInputError) as quick:
        analyze_quick(path, model=str(tiny_model_dir), sample_size=40)
    with pytest.raises(UserInputError) as full:
        analyze_file(path, model=str(tiny_model_dir))
    assert "line 46" in str(full.value) and str(quick.value) == str(full.value)  # every bad line, not the drawn ones
    with pytest.raises(UserInputError, match="choose a model"):
        analyze_quick(path, model="tiktoken")


def test_cli_quick_prints_the_bounds(population, tiny_model_dir, capsys):
    assert main([str(population), "--model", str(tiny_model_dir), "--quick", "--sample", "500", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["mode"], data["examples"], data["sample_size"]) == ("quick", 3000, 500)
    assert set(data["intervals"]["total"]) == {f"p{q}" for q in PERCENTILES} and data["share_error_pct"] > 0
