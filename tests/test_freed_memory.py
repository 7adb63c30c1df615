"""Trimming after decoder layers hands a freed activation's memory back while the peak grows."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from core.freed_memory import trim_heap_after_layers
from core.paths import PROJECT_ROOT

# In a fresh process: free one 8 MiB tensor (glibc then raises its mmap threshold above 8 MiB, so
# later 8 MiB blocks come from the heap); each layer then takes 8 MiB from the heap beneath a small
# live tensor and frees it. Reports how much RSS the layers' forward kept.
_KEPT_AFTER_LAYERS = """
import json, sys, psutil, torch
from core.freed_memory import trim_heap_after_layers

class HoleDecoderLayer(torch.nn.Module):
    pins = []
    def forward(self, hidden):
        block = torch.ones(2 << 20)  # 8 MiB, freed when forward returns
        self.pins.append(torch.ones(16))  # a live allocation after it: the heap cannot shrink past it
        return hidden * 2

model = torch.nn.Sequential(*(HoleDecoderLayer() for _ in range(8)))
trimming = trim_heap_after_layers(model, int(sys.argv[2])) if sys.argv[1] == "on" else 0
hidden = torch.ones(64, 8, requires_grad=True)
rss = lambda: psutil.Process().memory_info().rss
first = torch.ones(2 << 20); del first
before = rss()
model(hidden)
print(json.dumps({"trimming": trimming, "kept_mib": (rss() - before) / 2**20}))
"""


def _kept_mib(mode: str, peak_step_bytes: int = 0) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _KEPT_AFTER_LAYERS, mode, str(peak_step_bytes)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_layers_hand_freed_blocks_back_while_the_peak_grows():
    on, off, unchanged = _kept_mib("on", 0), _kept_mib("off"), _kept_mib("on", 1 << 30)
    assert on["trimming"] == 8  # every decoder layer, glibc here
    assert off["kept_mib"] > 24  # the default: the eight freed 8 MiB blocks stay in the heap, in part
    assert on["kept_mib"] < off["kept_mib"] / 4  # a step of 0: trimmed after every layer
    assert unchanged["kept_mib"] > 24  # a peak that grew by less than the step: nothing trimmed


def test_engine_model_trims_after_each_decoder_layer_with_autograd_only(tiny_model_dir, tmp_path, monkeypatch):
    from core.config import TrainConfig
    from core.engine import build_model

    trims = []
    monkeypatch.setattr("core.freed_memory._malloc_trim", lambda: trims.append)
    model, _ = build_model(TrainConfig(model_name_or_path=str(tiny_model_dir), output_dir=str(tmp_path)), "cpu")
    layers = len(model.base_model.model.model.layers)
    assert trim_heap_after_layers(model, peak_step_bytes=0) == layers > 0  # any peak: trim every time
    batch = {"input_ids": torch.randint(4, 200, (2, 50))}
    with torch.no_grad():
        model(**batch)  # nothing kept for backward: no holes worth trimming
    assert trims == []
    model(**batch).logits.sum().backward()
    assert trims == [0] * layers
