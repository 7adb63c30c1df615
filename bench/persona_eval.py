"""Does the tuned persona bot know its facts on questions it never saw? (issue 7's check)

    python -m bench.persona_eval [--preset cpu-quick-demo] [--lang en|zh] [--run-dir DIR]
                                 [--skip-train] [key=value ...]

Trains the preset through the real CLI (`python -m core.train`, timed), then asks the held-out
eval questions (datasets_demo/persona_eval_<lang>.jsonl: phrasings that are NOT in the training
file) with greedy decoding, to the base model and to base + adapter, and counts the answers that
contain the key fact. Too slow for the test suite: it is a benchmark, run by hand.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from core.config import TrainConfig, load_config, parse_overrides, save_config
from core.events import RunFolder
from core.models import load_model, load_tokenizer, resolve_model
from core.paths import PROJECT_ROOT
from core.presets import load_preset
from core.probes import greedy_answers
from core.template import ChatEncoder


def score(items: list[dict], answers: list[str]) -> tuple[float, dict[str, list[int]]]:
    per_fact: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item, answer in zip(items, answers):
        hit = item["key_fact"].lower() in answer.lower()
        per_fact[item["fact_id"]][0] += hit
        per_fact[item["fact_id"]][1] += 1
    return sum(h for h, _ in per_fact.values()) / len(items), dict(per_fact)


def train(config: TrainConfig) -> float:
    run = RunFolder(config.output_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    path = run.path / "bench-config.yaml"
    save_config(config, path)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "core.train", str(path)], check=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-quick-demo")
    parser.add_argument("--lang", default="en", choices=("en", "zh"))
    parser.add_argument("--run-dir", default="runs/bench-persona")
    parser.add_argument("--skip-train", action="store_true", help="evaluate the adapter already in --run-dir")
    parser.add_argument("overrides", nargs="*", help="TrainConfig key=value")
    args = parser.parse_args()

    run = RunFolder(args.run_dir)
    if args.skip_train:
        config, train_s = load_config(run.config), None
    else:
        overrides = {"dataset": str(PROJECT_ROOT / f"datasets_demo/persona_{args.lang}.jsonl"),
                     **parse_overrides(args.overrides), "output_dir": args.run_dir}
        config = load_preset(args.preset, overrides)
        train_s = train(config)
    final = next(e for e in reversed(run.all_events()) if e["type"] in ("done", "stopped", "error"))

    items = [json.loads(line) for line in
             (PROJECT_ROOT / f"datasets_demo/persona_eval_{args.lang}.jsonl").read_text("utf-8").splitlines()]
    questions = [item["question"] for item in items]
    from peft import PeftModel

    source = resolve_model(config.model_name_or_path)
    tokenizer = load_tokenizer(source)
    encoder = ChatEncoder(tokenizer, config.system_prompt)
    model = PeftModel.from_pretrained(load_model(source, device="cpu"), str(run.adapter)).eval()
    started = time.monotonic()
    tuned = greedy_answers(model, tokenizer, encoder, questions)
    with model.disable_adapter():
        base = greedy_answers(model, tokenizer, encoder, questions)
    eval_s = time.monotonic() - started

    tuned_acc, per_fact = score(items, tuned)
    base_acc, _ = score(items, base)
    print(f"\npreset {args.preset}, {len(items)} held-out questions ({args.lang}), greedy decoding")
    print(f"{'fact':24} tuned")
    for fact, (hits, total) in sorted(per_fact.items()):
        print(f"{fact:24} {hits}/{total}")
    misses = [(item, answer) for item, answer in zip(items, tuned)
              if item["key_fact"].lower() not in answer.lower()]
    print(f"\nmissed ({len(misses)}): question, expected key fact, tuned answer")
    for item, answer in misses:
        print(f"  Q: {item['question']}  [{item['key_fact']}]\n  A: {answer.strip()[:200]}")
    print(f"\nbase model accuracy  {base_acc:6.1%}")
    print(f"tuned model accuracy {tuned_acc:6.1%}")
    if train_s is not None:
        print(f"training wall time   {train_s:6.0f} s (incl. model load)")
    print(f"final train loss     {final.get('final_loss')}, {final.get('tokens_per_s')} tokens/s, "
          f"steps {final.get('step')}")
    print(f"eval wall time       {eval_s:6.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
