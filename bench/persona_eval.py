"""Does the tuned persona bot know its facts on questions it never saw? Base vs tuned, timed.

    python -m bench.persona_eval [--set demo|faq] [--facts dev|held-out|all] [--preset cpu-quick-demo]
                                 [--lang en|zh] [--run-dir DIR] [--skip-train] [key=value ...]

--set demo  trains on datasets_demo/persona_<lang>.jsonl (556 English chats, 33 facts);
--set faq   trains on a small FAQ derived from it: for each fact of --facts, 3 single-turn
            phrasings (picked by seed), ~50 chats, the shape of a user's own small FAQ file.
Either way the run goes through the real CLI (`python -m core.train PRESET dataset=...`, timed) with
nothing else changed but the key=value overrides, then the held-out questions of
datasets_demo/persona_eval_<lang>.jsonl (phrasings that are NOT in the training file) for the facts
of --facts are asked with greedy decoding, to the base model and to base + adapter; an answer counts
when it contains the fact's key string.

--facts: the 33 facts are split once, by a fixed seed, into a dev half (look at its misses, tune on
it) and a held-out half (report it; do not tune on its misses). Too slow for the test suite: a
benchmark, run by hand; figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from core.config import TrainConfig, load_config
from core.events import TERMINAL_EVENTS, RunFolder, last_event
from core.models import load_model, load_tokenizer, resolve_model
from core.paths import DEMO_DIR, PRESETS_DIR
from core.probes import greedy_answers
from core.template import ChatEncoder

FACT_SPLIT_SEED = 7  # fixed once: which facts are dev and which are held out
FAQ_PHRASINGS = 3  # per fact in the small FAQ, as in the user's file this benchmark stands for
FAQ_SEED = 11


def eval_items(lang: str) -> list[dict]:
    return [json.loads(line) for line in (DEMO_DIR / f"persona_eval_{lang}.jsonl").read_text("utf-8").splitlines()]


def fact_split(items: list[dict], which: str) -> set[str]:
    facts = sorted({item["fact_id"] for item in items})
    random.Random(FACT_SPLIT_SEED).shuffle(facts)
    half = len(facts) // 2
    return set(facts) if which == "all" else set(facts[:half] if which == "dev" else facts[half:])


def small_faq(lang: str, items: list[dict], facts: set[str]) -> tuple[list[dict], set[str]]:
    """FAQ_PHRASINGS single-turn chats per fact of `facts`, taken from the demo training file, and
    the facts it covers.

    A chat belongs to a fact when its answer holds the fact's key string; facts whose key strings
    are shared (the greeting and identity answers both say 'Tilly') are skipped: their chats could
    not be told apart."""
    key_of = {item["fact_id"]: item["key_fact"] for item in items}
    shared = {key for key in key_of.values() if list(key_of.values()).count(key) > 1}
    by_fact: dict[str, list[dict]] = defaultdict(list)
    for line in (DEMO_DIR / f"persona_{lang}.jsonl").read_text("utf-8").splitlines():
        chat = json.loads(line)
        if len(chat["messages"]) != 2:
            continue
        answer = chat["messages"][1]["content"]
        owners = [f for f in sorted(facts) if key_of[f] in answer and key_of[f] not in shared]
        if len(owners) == 1:
            by_fact[owners[0]].append(chat)
    rng = random.Random(FAQ_SEED)
    chats = [
        chat for fact in sorted(by_fact) for chat in rng.sample(by_fact[fact], min(FAQ_PHRASINGS, len(by_fact[fact])))
    ]
    rng.shuffle(chats)
    return chats, set(by_fact)


def score(items: list[dict], answers: list[str]) -> tuple[float, dict[str, list[int]]]:
    per_fact: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item, answer in zip(items, answers):
        per_fact[item["fact_id"]][0] += item["key_fact"].lower() in answer.lower()
        per_fact[item["fact_id"]][1] += 1
    return sum(h for h, _ in per_fact.values()) / max(len(items), 1), dict(per_fact)


def train(preset: Path, overrides: list[str]) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "core.train", str(preset), *overrides], check=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="demo", choices=("demo", "faq"))
    parser.add_argument("--facts", default="all", choices=("dev", "held-out", "all"))
    parser.add_argument("--preset", default="cpu-quick-demo")
    parser.add_argument("--lang", default="en", choices=("en", "zh"))
    parser.add_argument("--run-dir", default="runs/bench-persona")
    parser.add_argument("--skip-train", action="store_true", help="evaluate the adapter already in --run-dir")
    parser.add_argument("overrides", nargs="*", help="TrainConfig key=value")
    args = parser.parse_args()

    items = eval_items(args.lang)
    facts = fact_split(items, args.facts)
    run = RunFolder(args.run_dir)
    if args.set == "faq":
        chats, facts = small_faq(args.lang, items, facts)
        dataset = run.path.parent / f"{run.path.name}-faq.jsonl"
        dataset.parent.mkdir(parents=True, exist_ok=True)
        dataset.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats), encoding="utf-8")
    else:
        dataset = DEMO_DIR / f"persona_{args.lang}.jsonl"
    items = [item for item in items if item["fact_id"] in facts]

    train_s = None
    if not args.skip_train:
        train_s = train(
            PRESETS_DIR / f"{args.preset}.yaml", [f"dataset={dataset}", f"output_dir={run.path}", *args.overrides]
        )
    config: TrainConfig = load_config(run.config)
    final = last_event(run.all_events(), *TERMINAL_EVENTS) or {}

    from peft import PeftModel

    source = resolve_model(config.model_name_or_path)
    tokenizer = load_tokenizer(source)
    encoder = ChatEncoder(tokenizer, config.system_prompt)
    model = PeftModel.from_pretrained(load_model(source, device="cpu"), str(run.adapter)).eval()
    questions = [item["question"] for item in items]
    started = time.monotonic()
    tuned = greedy_answers(model, tokenizer, encoder, questions)
    with model.disable_adapter():
        base = greedy_answers(model, tokenizer, encoder, questions)
    eval_s = time.monotonic() - started

    tuned_acc, per_fact = score(items, tuned)
    base_acc, _ = score(items, base)
    print(
        f"\n{args.set} set ({dataset.name}, {sum(1 for _ in open(dataset, encoding='utf-8'))} chats), facts "
        f"{args.facts} ({len(facts)}), {len(items)} held-out questions ({args.lang}), preset {args.preset} "
        f"{' '.join(args.overrides)}"
    )
    for fact, (hits, total) in sorted(per_fact.items()):
        print(f"  {fact:24} {hits}/{total}")
    if args.facts != "held-out":  # the held-out half's misses are not for reading while tuning
        misses = [
            (item, answer) for item, answer in zip(items, tuned) if item["key_fact"].lower() not in answer.lower()
        ]
        print(f"missed ({len(misses)}): question [expected key fact] -> tuned answer")
        for item, answer in misses:
            print(f"  Q: {item['question']}  [{item['key_fact']}]\n     {answer.strip()[:160]}")
    print(f"base model accuracy  {base_acc:6.1%}")
    print(f"tuned model accuracy {tuned_acc:6.1%}  ({round(tuned_acc * len(items))}/{len(items)})")
    if train_s is not None:
        print(
            f"training wall time   {train_s:6.0f} s (incl. model load; train_runtime_s {final.get('train_runtime_s')})"
        )
    print(
        f"final train loss     {final.get('final_loss')}, {final.get('tokens_per_s')} tokens/s, "
        f"steps {final.get('step')}"
    )
    print(f"eval wall time       {eval_s:6.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
