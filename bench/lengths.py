"""How fast is the length analyzer? (issue 3's speed check)

    python -m bench.lengths [--examples 100000] [--baseline-examples 1000] [--model default] [--profile]

Writes a deterministic dataset of mixed-length, multi-turn conversations to a temporary file, then
times, on it and on the demo set:
  estimate  analyze_file(model="tiktoken")
  exact     analyze_file(model=...) (the model's tokenizer and chat template via ChatEncoder.encode)
  baseline  the naive exact count: per example tokenizer.apply_chat_template(tokenize=True), plus
            one re-tokenization of every assistant turn's prompt and `through` prefix to find the
            trained tokens; run on a subset and extrapolated per example.
and prints examples/s and the speed-up of exact over the baseline, measured in the same run.
--profile prints the top of a cProfile of the exact mode. A benchmark, not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import tempfile
import time
from pathlib import Path

from core.data import load_dataset
from core.lengths import analyze_conversations, analyze_file
from core.models import load_tokenizer, resolve_model
from core.template import ChatEncoder

DEMO = Path(__file__).resolve().parent.parent / "datasets_demo" / "persona_en.jsonl"
SEED = 0
WORDS = """
order shipping return refund item days policy help please thank you can we our your the a an is are
was will be to of in on for with at by from this that it not no yes card account email phone store
open close hours weekend price cost free express tracking link package box kettle toaster warranty
broken replace colour size delivery address change cancel discount code coupon member points gift
wrap receipt invoice tax euro dollar customer service support team agent manager available today
tomorrow morning evening week month year business working quickly carefully unfortunately however
instructions settings temperature boil water filter descale cleaning vinegar lemon minutes seconds
ceramic stainless steel glass handle lid base cable plug socket voltage adapter travel international
""".split()
NUMBERS = ["12.95", "30", "5", "1-800-555-0142", "2024", "#48213", "€49", "$59", "10%", "3-5"]
CHINESE = "您好请问我的订单什么时候发货退款需要几天谢谢保修期多久可以换货吗运费是多少"


def _sentence(rng: random.Random, words: int) -> str:
    parts = [rng.choice(NUMBERS) if rng.random() < 0.05 else rng.choice(WORDS) for _ in range(words)]
    if rng.random() < 0.03:
        parts.append("".join(rng.choice(CHINESE) for _ in range(rng.randint(3, 15))))
    text = " ".join(parts)
    return text[:1].upper() + text[1:] + rng.choice([".", ".", "?", "!", ":\n-"])


def _turn(rng: random.Random, median_words: float) -> str:
    words = max(1, round(rng.lognormvariate(0, 0.7) * median_words))
    if rng.random() < 0.005:
        words *= 15  # the long tail: a pasted document or a very long answer
    sentences = []
    while words > 0:
        size = min(words, rng.randint(4, 18))
        sentences.append(_sentence(rng, size))
        words -= size
    return " ".join(sentences)


def generate(path: Path, examples: int, seed: int = SEED) -> Path:
    """OpenAI-messages JSONL: 1-4 exchanges, a system turn in 1 of 5, lognormal turn lengths."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(examples):
            messages = [{"role": "system", "content": _turn(rng, 12)}] if rng.random() < 0.2 else []
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
                messages += [
                    {"role": "user", "content": _turn(rng, 10)},
                    {"role": "assistant", "content": _turn(rng, 28)},
                ]
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return path


def naive_count(tokenizer, conversation: list[dict]) -> tuple[int, int]:
    """(total, trained) tokens the straightforward way: apply_chat_template per example and per prefix."""
    ids = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=False)
    trained = 0
    for index, message in enumerate(conversation):
        if message["role"] == "assistant":
            prompt = tokenizer.apply_chat_template(
                conversation[:index], tokenize=True, return_dict=False, add_generation_prompt=True
            )
            through = tokenizer.apply_chat_template(conversation[: index + 1], tokenize=True, return_dict=False)
            trained += len(through) - len(prompt)
    return len(ids), trained


def _timed(label: str, examples: int, fn):
    """Wall time (what a user waits) and CPU time of this process's threads: on a shared machine
    the wall time grows with the other load, the CPU time much less."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rate = f"{examples / seconds:>9,.0f} examples/s" if examples else ""
    print(f"  {label:<46} {seconds:7.2f} s wall {cpu:7.2f} s CPU {rate}", flush=True)
    return result, seconds, cpu


def bench_file(path: Path, model: str, baseline_examples: int, tokenizer) -> None:
    dataset, _, _ = _timed("load_dataset (inside both analyze_file rows)", 0, lambda: load_dataset(path))
    n = len(dataset.conversations)
    _timed("estimate: analyze_file(model='tiktoken')", n, lambda: analyze_file(path, "tiktoken"))
    _timed(f"exact: analyze_file(model={model!r})", n, lambda: analyze_file(path, model))
    _timed("estimate, analysis only (data loaded)", n, lambda: analyze_conversations(dataset.conversations, None))
    encoder = ChatEncoder(tokenizer)
    report, exact_s, exact_cpu = _timed(
        "exact, analysis only (data, tokenizer loaded)",
        n,
        lambda: analyze_conversations(dataset.conversations, encoder),
    )
    tokens = int(report.summary["total"]["mean"] * n)
    print(
        f"  exact tokens: ~{tokens:,} ({report.summary['total']['mean']:.0f} per conversation, max "
        f"{report.summary['total']['max']:,}); suggested cutoff_len {report.suggested_cutoff} ({report.reason})"
    )
    subset = dataset.conversations[:baseline_examples]
    counts, naive_s, naive_cpu = _timed(
        f"naive baseline on the first {len(subset):,}", len(subset), lambda: [naive_count(tokenizer, c) for c in subset]
    )
    same = [total for total, _ in counts] == [len(e.input_ids) for e in encoder.encode(subset)]
    scale = n / len(subset)
    print(
        f"  naive baseline extrapolated to {n:,}: {naive_s * scale:.1f} s wall, {naive_cpu * scale:.1f} s CPU "
        f"(its totals equal the exact mode's: {same})"
    )
    print(
        f"  speed-up of exact analysis over the naive baseline: {naive_s * scale / exact_s:.1f}x wall, "
        f"{naive_cpu * scale / exact_cpu:.1f}x CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lengths", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--baseline-examples", type=int, default=1000)
    parser.add_argument("--model", default="default")
    parser.add_argument("--profile", action="store_true", help="cProfile the exact mode on the generated set")
    args = parser.parse_args()
    print(
        f"CPU: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
        f"(the machine may be shared: timings are as measured)"
    )
    tokenizer = load_tokenizer(resolve_model(args.model))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        start = time.perf_counter()
        generate(path, args.examples)
        print(
            f"\nGenerated {args.examples:,} conversations (seed {SEED}, {path.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - start:.1f} s"
        )
        bench_file(path, args.model, args.baseline_examples, tokenizer)
        if DEMO.is_file():
            print(f"\nDemo set {DEMO.name}")
            bench_file(DEMO, args.model, args.baseline_examples, tokenizer)
        if args.profile:
            conversations = load_dataset(path).conversations
            profile = cProfile.Profile()
            profile.runcall(analyze_conversations, conversations, ChatEncoder(tokenizer))
            print("\ncProfile of exact analysis (top 15 by own time):")
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
