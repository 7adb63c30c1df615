"""GGUF export of a trained run: time, size, largest logit difference and greedy agreement per type,
and the same check on a GGUF written with the q/k permutation left out (what a converter error
looks like next to rounding; it sets the tolerance in core.export.GGUF_TOLERANCE).

    python -m bench.gguf_export RUN

RUN is a run folder with an adapter, e.g. from
`python -m core.train presets/cpu-quick-demo.yaml max_steps=5 output_dir=/tmp/gguf-run`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import core.gguf_export
from core.events import RunFolder
from core.export import export_gguf, verification_questions, verify_gguf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    rows = []
    for gguf_type in core.gguf_export.GGUF_TYPES:
        started = time.monotonic()
        result = export_gguf(args.run, gguf_type)
        rows.append((gguf_type, time.monotonic() - started, result.gguf.stat().st_size, result.check))
    # The same merged model written without the permutation llama.cpp's llama graph needs.
    keep = core.gguf_export._rope_interleave
    core.gguf_export._rope_interleave = lambda weight, heads: weight
    folder = Path(tempfile.mkdtemp())
    try:
        started = time.monotonic()
        gguf = core.gguf_export.write_gguf(args.run / "merged", folder / "unpermuted.gguf", "f16", "unpermuted")
        questions, source = verification_questions(RunFolder(args.run))
        check = verify_gguf(args.run / "merged", gguf, "f16", questions, source)
        rows.append(("f16, q/k not permuted", time.monotonic() - started, gguf.stat().st_size, check))
    finally:
        core.gguf_export._rope_interleave = keep
        shutil.rmtree(folder)
    print("| GGUF | time (s) | size (MB) | largest logit difference | share of largest logit | greedy answers equal |")
    print("|---|---|---|---|---|---|")
    for name, seconds, size, check in rows:
        print(
            f"| {name} | {seconds:.0f} | {size / 1e6:.1f} | {check.max_logit_diff:.3g} | "
            f"{check.max_logit_diff / check.max_logit:.2%} | {check.greedy_matches}/{len(check.questions)} |"
        )


if __name__ == "__main__":
    main()
