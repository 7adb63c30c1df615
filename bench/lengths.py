"""How fast is the length analyzer, against the tokenizer's floor and LLaMA-Factory? (issue 14)

    python -m bench.lengths [--examples 100000] [--model default] [--sample N] [--no-lf] [--profile]

Writes a deterministic dataset of mixed-length, multi-turn conversations (~306 tokens each with the
default model) to a temporary file, then times on it, one after the other, each row in a fresh
Python process of its own (so no row inherits another's heap, caches or thread pools):
  quick     core.quick_lengths.analyze_quick: reads every line's byte length, counts a random sample
            exactly, model-assisted percentiles
  exact     core.lengths.analyze_file: reads, validates, renders and counts every conversation
  estimate  analyze_file(model="tiktoken")
  floor     the model's tokenizer alone batch-encoding the same turn texts (data already loaded):
            the HF tokenizer call, and its Rust backend's encode_batch (no Python lists); each
            frees its result inside the timing, as the exact mode frees its Encodings; "x floor"
            divides by the faster of the two
  LF        LLaMA-Factory's SFT data pipeline (its get_dataset: load, template, tokenize) on the same
            file through a dataset_info.json entry, in bench/.lf-venv (bench/lf_venv.py), timed
            inside that process after its imports and tokenizer load
and prints the analyzer table (wall and CPU time, ratios) and how far the quick p50/p95 are from
the exact ones. Each row's process loads the tokenizer before its timer starts (a server keeps
it; its load is printed), and the floors' processes read the turn texts first; "CPU x" is the CPU
time over the floors' smaller one. --profile prints the top of a cProfile of the exact mode. A
benchmark, not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.lf_venv import lf_python, register_dataset
from core.data import load_dataset
from core.lengths import analyze_conversations, analyze_file
from core.models import load_tokenizer, resolve_model
from core.quick_lengths import analyze_quick
from core.template import ChatEncoder

SEED = 0
WORDS_SCALE = 1.8  # turn lengths x this: ~306 tokens a conversation with the default model, as in issue 14
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


def generate(path: Path, examples: int, seed: int = SEED, scale: float = WORDS_SCALE) -> Path:
    """OpenAI-messages JSONL: 1-4 exchanges, a system turn in 1 of 5, lognormal turn lengths."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(examples):
            messages = [{"role": "system", "content": _turn(rng, 12 * scale)}] if rng.random() < 0.2 else []
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
                messages += [
                    {"role": "user", "content": _turn(rng, 10 * scale)},
                    {"role": "assistant", "content": _turn(rng, 28 * scale)},
                ]
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return path


# LLaMA-Factory's SFT data pipeline, run by its own venv's python: argv[1] is its YAML keys as JSON.
LF_SCRIPT = """
import json, sys, time
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
model_args, data_args, training_args, _, _ = get_train_args(json.loads(sys.argv[1]))
tokenizer_module = load_tokenizer(model_args)
template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
start, cpu = time.perf_counter(), time.process_time()
dataset = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
train = dataset["train_dataset"]
tokens = sum(map(len, train["input_ids"]))
print(json.dumps({"seconds": seconds, "cpu": cpu, "examples": len(train), "tokens": tokens}))
"""


def llama_factory(path: Path, model_path: str, folder: Path) -> dict:
    """LLaMA-Factory's get_dataset on `path` (stage sft, template smollm2): its own timing and counts."""
    register_dataset(path)
    keys = {
        "model_name_or_path": model_path,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "dataset": path.stem,
        "dataset_dir": str(path.parent),
        "template": "smollm2",
        "cutoff_len": 100_000,  # nothing truncated: every token counted, as ours
        "overwrite_cache": True,
        "output_dir": str(folder / "lf-out"),
        "report_to": "none",
    }
    env = {**os.environ, "HF_DATASETS_CACHE": str(folder / "hf-datasets"), "HF_HUB_OFFLINE": "1"}
    env["DISABLE_VERSION_CHECK"] = "1"
    done = subprocess.run(
        [str(lf_python()), "-c", LF_SCRIPT, json.dumps(keys)], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"LLaMA-Factory failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


ROWS = {  # row -> (what it times, its name in the table; None: printed only)
    "quick": ("quick: analyze_quick (read, sample, count)", "quick"),
    "exact": ("exact: analyze_file (read, validate, render, count)", "exact"),
    "estimate": ("estimate: analyze_file(model='tiktoken')", "estimate (tiktoken)"),
    "load": ("load_dataset alone (inside exact and estimate)", None),
    "floor-hf": ("floor: tokenizer(turn texts), HF call", "floor: HF tokenizer(turn texts)"),
    "floor-rust": ("floor: its Rust backend's encode_batch, no Python lists", "floor: Rust encode_batch(turn texts)"),
}


def run_row(row: str, path: Path, model: str, sample: int | None, profile: bool) -> dict:
    """One row, timed in this process after its set-up: the tokenizer loaded (a server keeps it) and,
    for the floors, the turn texts read. Wall time is what a user waits; CPU time is this process's
    threads' (on a shared machine the wall time grows with the other load, the CPU time much less)."""
    start = time.perf_counter()
    tokenizer = load_tokenizer(resolve_model(model))
    setup = {"tokenizer_load_s": time.perf_counter() - start}
    turns = []
    if row.startswith("floor"):
        turns = [m["content"] for c in load_dataset(path).conversations for m in c]
        setup["turns"] = len(turns)
    backend = tokenizer.backend_tokenizer
    work = {  # each frees its result inside the timing, as the exact mode frees its Encodings
        "quick": lambda: analyze_quick(path, model, sample_size=sample),
        "exact": lambda: analyze_file(path, model),
        "estimate": lambda: analyze_file(path, "tiktoken"),
        "load": lambda: len(load_dataset(path).conversations),
        "floor-hf": lambda: len(tokenizer(turns, add_special_tokens=False, return_attention_mask=False)["input_ids"]),
        "floor-rust": lambda: len(backend.encode_batch(turns, add_special_tokens=False)),
    }[row]
    start, cpu_start = time.perf_counter(), time.process_time()
    result = work()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    report = result.to_dict() if hasattr(result, "to_dict") else {}
    if profile and row == "exact":
        conversations = load_dataset(path).conversations
        stats = cProfile.Profile()
        stats.runcall(analyze_conversations, conversations, ChatEncoder(tokenizer))
        print("\ncProfile of exact analysis, data loaded (top 15 by own time):")
        pstats.Stats(stats).sort_stats("tottime").print_stats(15)
    return {"seconds": seconds, "cpu": cpu, **setup, **{k: report[k] for k in ("summary", "intervals") if k in report}}


def _row_in_fresh_process(row: str, path: Path, args: argparse.Namespace) -> dict:
    """run_row in a new Python process: every row starts from the same state (no heap, caches or
    thread pools left by the rows before it, nor by generating the data)."""
    command = [sys.executable, "-m", "bench.lengths", "--row", row, "--data", str(path), "--model", args.model]
    command += ["--sample", str(args.sample)] if args.sample is not None else []
    command += ["--profile"] if args.profile else []
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=Path(__file__).parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"bench row {row} failed:\n{done.stderr[-3000:]}")
    *printed, last = done.stdout.strip().splitlines()
    result = json.loads(last)
    print(f"  {ROWS[row][0]:<58} {result['seconds']:7.2f} s wall {result['cpu']:7.2f} s CPU", flush=True)
    if printed:  # --profile's table
        print("\n".join(printed))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lengths", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--model", default="default")
    parser.add_argument("--sample", type=int, default=None, help="the quick mode's sample (default: its own)")
    parser.add_argument("--no-lf", action="store_true", help="leave LLaMA-Factory out")
    parser.add_argument("--profile", action="store_true", help="cProfile the exact mode on the generated set")
    parser.add_argument("--row", choices=ROWS, help=argparse.SUPPRESS)  # internal: one row, in this process
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)  # internal: the generated file
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(args.row, args.data, args.model, args.sample, args.profile)))
        return
    print(
        f"CPU: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
        f"(the machine may be shared: timings are as measured)"
    )
    source = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chats.jsonl"
        generate(path, args.examples)
        print(f"\nGenerated {args.examples:,} conversations (seed {SEED}, {path.stat().st_size / 1e6:.0f} MB)")
        print("Each row in a fresh process, timed after its tokenizer load (and, for the floors, reading the texts):")
        results = {row: _row_in_fresh_process(row, path, args) for row in ROWS}
        quick, exact = results["quick"], results["exact"]
        print(
            f"  (tokenizer load before each row: {exact['tokenizer_load_s']:.2f} s; "
            f"the floors encode {results['floor-rust']['turns']:,} turn texts)"
        )
        rows = {name: [results[row]["seconds"], results[row]["cpu"]] for row, (_, name) in ROWS.items() if name}
        if not args.no_lf:
            start = time.perf_counter()
            lf = llama_factory(path, source.path, Path(tmp))
            rows["LLaMA-Factory data pipeline"] = [lf["seconds"], lf["cpu"]]
            mean = exact["summary"]["total"]["mean"]
            print(
                f"  LLaMA-Factory: {lf['examples']:,} examples, {lf['tokens'] / lf['examples']:.0f} tokens a "
                f"conversation (ours: {mean:.0f}); its process took {time.perf_counter() - start:.0f} s"
            )
        floor = min(rows["floor: HF tokenizer(turn texts)"][0], rows["floor: Rust encode_batch(turn texts)"][0])
        floor_cpu = min(rows["floor: HF tokenizer(turn texts)"][1], rows["floor: Rust encode_batch(turn texts)"][1])
        print(f"\nAnalyzer on {args.examples:,} conversations, {exact['summary']['total']['mean']:.0f} tokens each:")
        print(f"  {'':<38} {'wall s':>8} {'CPU s':>8} {'x floor':>8} {'CPU x':>8} {'x exact':>8}")
        for name, (seconds, cpu) in rows.items():
            print(
                f"  {name:<38} {seconds:8.2f} {cpu:8.2f} {seconds / floor:8.2f} {cpu / floor_cpu:8.2f} "
                f"{seconds / rows['exact'][0]:8.2f}"
            )
        for column in ("total", "prompt", "supervised"):
            for q in ("p50", "p95"):
                got, want = quick["summary"][column][q], exact["summary"][column][q]
                low, high = quick["intervals"].get(column, {}).get(q, [got, got])
                print(
                    f"  quick {column} {q}: {got} (interval {low}..{high}), exact {want}: "
                    f"{100 * (got / want - 1):+.1f}%"
                )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
