"""The pre-flight estimate (core.estimate, core.calibration): its memory arithmetic against numbers
worked out by hand, how the terms move with the settings, the "will not fit" advice, the cost fit
and cache, the ETA from step events, and the Train tab's read-out. No timing assertions."""

import json
from dataclasses import replace

import numpy as np
import pytest

from core import calibration, estimate
from core.config import TrainConfig
from core.estimate import GIB, CostModel, ModelShape, batch_tokens, cutoff_batch_tokens, memory_bytes
from core.models import CACHE_ENV
from core.runs import progress_of

# H 8, 2 layers, 2 heads of 4 (1 kv head), MLP 16, vocab 32, untied output layer.
SHAPE = ModelShape(
    hidden_size=8,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    head_dim=4,
    intermediate_size=16,
    vocab_size=32,
    tied_embeddings=False,
)
# batch 2 x cutoff 10, no data: the peak micro-batch is 20 positions, 10 of them trained.
CONFIG = TrainConfig(
    per_device_train_batch_size=2,
    gradient_accumulation_steps=1,
    cutoff_len=10,
    lora_rank=2,
    lora_target="all",
    lora_dropout=0.0,
    gradient_checkpointing=False,
    trained_tokens_loss=True,
    quantization_bit="none",
    cpu_bf16=False,  # float32 weights on any CPU (cpu_bf16: its own test)
)


def _memory(**changes):
    config = replace(CONFIG, **changes)
    return memory_bytes(SHAPE, config, cutoff_batch_tokens(config), "cpu")


# ------------------------------------------------------------------------------------ by hand
def test_model_shape_reads_config_json(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 8,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "intermediate_size": 16,
                "vocab_size": 32,
            }
        ),
        encoding="utf-8",
    )
    assert estimate.model_shape(tmp_path) == SHAPE  # head_dim 8 / 2 heads; untied by default; float32 files
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    (tmp_path / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}), encoding="utf-8")
    assert estimate.model_shape(tmp_path).checkpoint_bytes == 2
    (tmp_path / "config.json").write_text(json.dumps({"n_embd": 8}), encoding="utf-8")
    with pytest.raises(estimate.UserInputError, match="hidden_size"):
        estimate.model_shape(tmp_path)


def test_every_memory_term_matches_the_hand_count():
    # projections a layer: q 8x8 + k 8x4 + v 8x4 + o 8x8 + gate/up/down 3 x 8x16 = 576; x 2 layers
    assert SHAPE.linear_params == 1152
    # embeddings 32x8, output layer 32x8, norms (2 a layer + 1) x 8
    assert SHAPE.other_params == 552
    memory = _memory()
    assert memory.weights == (1152 + 552) * 4
    # LoRA r2: 2 x (in + out) a projection = 32 + 24 + 24 + 32 + 48 + 48 + 48 = 256 a layer, x 2 layers,
    # 16 bytes each (weight, gradient, two AdamW moments, float32)
    assert memory.lora == 512 * 16
    # per position and layer 7 H + 2 KV + 3 I (fused SwiGLU: no SiLU output) = 56 + 8 + 48 = 112 floats;
    # 20 positions x 2 layers x 448 B, plus one layer's backward gradients 20 x (2 H + 2 I) x 4 B
    assert memory.activations == 20 * 2 * 448 + 20 * 48 * 4
    # trained-tokens loss: one chunk (the 10 trained positions) x vocab x 4 B x 2 copies, + their hidden gradient
    assert memory.logits == 10 * 32 * 4 * 2 + 10 * 8 * 4
    assert memory.runtime == estimate.RUNTIME_BYTES["cpu"]
    assert memory.total == memory.weights + memory.lora + memory.activations + memory.logits + memory.runtime


def test_cpu_bf16_halves_the_weights_not_the_activations(monkeypatch):
    from core import models

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    plain, bf16 = _memory(), _memory(cpu_bf16=True)
    assert bf16.weights == (1152 + 552) * 2
    # the residual stream, attention and the LoRA inputs stay float32 (core.lora_addmm)
    assert (bf16.activations, bf16.logits, bf16.lora) == (plain.activations, plain.logits, plain.lora)
    # loading reads the float32 files whole while it writes the bf16 weights: the peak is that or
    # training's, whichever is higher (here training's)
    assert plain.loading == 0 and bf16.loading == (1152 + 552) * 4
    training = bf16.weights + bf16.lora + bf16.activations + bf16.logits
    assert bf16.total == max(training, bf16.weights + bf16.loading) + bf16.runtime
    bf16_files = memory_bytes(
        replace(SHAPE, checkpoint_bytes=2), replace(CONFIG, cpu_bf16=True), cutoff_batch_tokens(CONFIG), "cpu"
    )
    assert bf16_files.loading == 0  # a bf16 checkpoint is used as it is
    # where loading is the higher: a large model, short rows
    loading_peak = estimate.Memory(weights=10, lora=1, activations=2, logits=3, runtime=5, loading=100)
    training_peak = estimate.Memory(weights=10, lora=1, activations=2, logits=3, runtime=5, loading=1)
    assert (loading_peak.total, loading_peak.loading_decides) == (115, True)
    assert (training_peak.total, training_peak.loading_decides) == (21, False)
    assert not bf16.loading_decides
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)  # emulated bf16: float32 weights
    assert _memory(cpu_bf16=True).weights == plain.weights


def test_quantization_checkpointing_and_the_loss_change_their_own_terms():
    plain = _memory()
    four = _memory(quantization_bit="4")
    eight = _memory(quantization_bit="8")
    # 4 bits: 1152 x (0.5 B + an 8-bit absmax a 64 + a float32 a 64 x 256) + the rest in float32
    assert four.weights == int(1152 * (0.5 + 1 / 64 + 4 / 16384)) + 552 * 4
    assert eight.weights == 1152 + 552 * 4
    assert four.weights < eight.weights < plain.weights
    assert (four.activations, four.lora) == (plain.activations, plain.lora)

    checkpointed = _memory(gradient_checkpointing=True)
    # each layer's input (20 x 2 layers x 8 x 4 B) plus one layer recomputed (20 x 448 B), + backward
    assert checkpointed.activations == 20 * (2 * 8 * 4 + 448) + 20 * 48 * 4
    assert checkpointed.logits == plain.logits and checkpointed.weights == plain.weights

    full_logits = _memory(trained_tokens_loss=False)
    assert full_logits.logits == 20 * 32 * 4 * 3  # every position, 3 float32 copies
    assert full_logits.activations == plain.activations

    # fused: 1-byte masks of 3 H + 1 I a position and layer (one for q/k/v, one for gate/up); inputs
    # this small keep a dropped copy in place of the norms' outputs and down_proj's input
    fused = _memory(lora_dropout=0.1)
    unfused = _memory(lora_dropout=0.1, fused_lora_dropout=False)  # float copies, nothing recomputed
    unshared = _memory(lora_dropout=0.1, shared_lora_input=False)  # a mask for each of the 7 projections
    assert fused.activations - plain.activations == 20 * 2 * (3 * 8 + 16)
    assert unfused.activations - plain.activations == 20 * 2 * (3 * 8 + 16) * 4
    assert unshared.activations - fused.activations == 20 * 2 * 3 * 8
    # without fused_swiglu the SiLU's output is kept too: one more I-sized float32 a position and layer
    assert _memory(fused_swiglu=False).activations - plain.activations == 20 * 2 * 16 * 4


def test_fused_dropout_of_larger_inputs_recomputes_instead_of_keeping(rebuilt_dropout_inputs):
    # above the copy limit the norms' outputs (2 H) and down_proj's input (1 I) are recomputed in
    # backward instead of kept in float32; the masks stay
    fused, plain = _memory(lora_dropout=0.1), _memory()
    assert fused.activations - plain.activations == 20 * 2 * ((3 * 8 + 16) - (2 * 8 + 16) * 4)


def test_activations_and_logits_grow_with_batch_and_cutoff():
    base = _memory()
    for changes in ({"per_device_train_batch_size": 4}, {"cutoff_len": 20}):
        doubled = _memory(**changes)
        assert doubled.activations == 2 * base.activations
        assert doubled.logits - 10 * 8 * 4 * 2 == 2 * (base.logits - 10 * 8 * 4)  # chunk x vocab grows too
        assert doubled.weights == base.weights and doubled.lora == base.lora
    assert _memory(lora_rank=4).lora == 2 * base.lora
    assert _memory(lora_target="q_proj,v_proj").lora == 2 * (32 + 24) * 16


def test_batches_from_the_data_packed_or_padded():
    lengths, trained = np.array([10, 20, 30, 40]), np.array([5, 10, 15, 20])
    packed = batch_tokens(lengths, trained, replace(CONFIG, cutoff_len=35, packing=True))
    assert packed.positions == (10 + 20 + 30 + 35) / 2  # two rows, whatever the order
    assert packed.trained == (5 + 10 + 15 + 20) / 2
    assert packed.peak_positions == 30 + 35  # the two longest together
    padded = batch_tokens(lengths, trained, replace(CONFIG, cutoff_len=35, packing=False))
    assert padded.peak_positions == 2 * 35
    assert padded.positions >= packed.positions and padded.attention_pairs >= packed.attention_pairs
    assert packed.from_data and not cutoff_batch_tokens(CONFIG).from_data


# ---------------------------------------------------------------------------- fit and advice
COST = CostModel(overhead_s=0.5, flops_per_s=1e6, source="rough")


def _estimate(available: int, config=CONFIG, steps=10):
    return estimate.estimate(config, SHAPE, None, steps, "cpu", available, COST)


def test_time_is_the_cost_model_times_the_steps():
    config = replace(CONFIG, gradient_accumulation_steps=3)
    est = _estimate(10 * GIB, config)
    flops = estimate.micro_batch_flops(SHAPE, config, cutoff_batch_tokens(config))
    assert est.step_s == pytest.approx(3 * (0.5 + flops / 1e6))
    assert est.total_s == pytest.approx(10 * est.step_s)
    assert _estimate(10 * GIB, config, steps=None).total_s is None


def test_checkpointing_adds_every_layers_forward_at_its_measured_speed():
    tokens = cutoff_batch_tokens(CONFIG)  # 20 positions, 2 x 10 x 11 / 2 = 110 (query, key) pairs
    on = replace(CONFIG, gradient_checkpointing=True)
    assert estimate.recompute_flops(SHAPE, CONFIG, tokens) == 0
    # the projections (1152) and LoRA (512) forward, 2 flops a weight and position; attention: QK^T and
    # AV, 2 heads x 4 dims x 2 layers x 4 flops a pair
    recompute = 20 * 2 * (1152 + 512) + 110 * 64
    assert estimate.recompute_flops(SHAPE, on, tokens) == recompute
    plain_flops = estimate.micro_batch_flops(SHAPE, CONFIG, tokens)
    assert estimate.micro_batch_flops(SHAPE, on, tokens) == plain_flops + recompute

    measured = CostModel(overhead_s=0.5, flops_per_s=1e6, source="calibrated", recompute_flops_per_s=2.5e5)
    assert measured.micro_batch_s(plain_flops + recompute, recompute) == pytest.approx(
        0.5 + plain_flops / 1e6 + recompute / 2.5e5
    )
    est = estimate.estimate(replace(on, gradient_accumulation_steps=2), SHAPE, None, 10, "cpu", 10 * GIB, measured)
    assert est.step_s == pytest.approx(2 * (0.5 + plain_flops / 1e6 + recompute / 2.5e5))
    # without checkpointing the recompute speed plays no part; not measured, the recompute runs at flops_per_s
    assert estimate.estimate(CONFIG, SHAPE, None, 10, "cpu", 10 * GIB, measured).step_s == pytest.approx(
        0.5 + plain_flops / 1e6
    )
    assert _estimate(10 * GIB, on).step_s == pytest.approx(0.5 + (plain_flops + recompute) / 1e6)


def test_will_not_fit_lists_each_change_that_lowers_the_peak():
    config = replace(CONFIG, per_device_train_batch_size=4, cutoff_len=256, trained_tokens_loss=False)
    peak = _estimate(100 * GIB, config).memory.total
    runtime = estimate.RUNTIME_BYTES["cpu"]
    est = _estimate(peak - 1, config)
    assert not est.fits and est.fixes
    changes = [fix.change for fix in est.fixes]
    assert {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2} in changes  # same effective batch
    assert {"gradient_checkpointing": True} in changes and {"trained_tokens_loss": True} in changes
    assert {"cutoff_len": 128} in changes and {"quantization_bit": "4"} in changes
    assert all(fix.peak_bytes < peak and fix.fits for fix in est.fixes)
    assert _estimate(peak, config).fits and not _estimate(peak, config).fixes
    # nothing fits alone: every change at once comes last
    tight = _estimate(runtime + 1, config)
    assert not any(fix.fits for fix in tight.fixes[:-1])
    assert tight.fixes[-1].change == {k: v for fix in tight.fixes[:-1] for k, v in fix.change.items()}


def test_processes_on_the_cpu_share_its_memory_and_cores():
    one = _estimate(10 * GIB)
    two = _estimate(10 * GIB, replace(CONFIG, num_processes=2))
    assert two.memory == one.memory and two.peak_bytes == 2 * one.memory.total
    assert two.step_s == pytest.approx(2 * one.step_s)
    refused = _estimate(one.memory.total, replace(CONFIG, num_processes=2))
    assert not refused.fits and refused.fixes[0] == estimate.Fix({"num_processes": 1}, one.memory.total, True)
    gpus = estimate.estimate(replace(CONFIG, num_processes=2), SHAPE, None, 10, "cuda", 10 * GIB, COST)
    assert gpus.processes == 1  # a device each


def test_fit_cost_recovers_overhead_and_speed():
    points = [(f, 0.25 + f / 2e9) for f in (1e9, 2e9, 5e9)]
    cost = calibration.fit_cost(points)
    assert cost.overhead_s == pytest.approx(0.25) and cost.flops_per_s == pytest.approx(2e9)
    # a line whose intercept would be negative (-0.2 s): the line through the origin instead
    through_origin = calibration.fit_cost([(1e9, 0.4), (2e9, 1.0), (3e9, 1.6)])
    assert through_origin.overhead_s == 0 and through_origin.flops_per_s == pytest.approx(14e9 / 7.2)
    with pytest.raises(calibration.UserInputError):
        calibration.fit_cost([(1e9, 1.0), (1e9, 1.1)])


def test_fit_recompute_pairs_each_length_with_and_without_checkpointing():
    # two lengths: plain flops 2e9 and 4e9, their recompute 1e9 and 2e9 at 1e9 flops/s, i.e. 1 s and 2 s
    # more; the longer length ran under more load (both ways alike), which the pairing leaves out
    plain = [(2e9, 1.0), (2e9, 1.2), (4e9, 3.0), (4e9, 3.0)]
    checkpointed = [(3e9, 1e9, 2.1), (3e9, 1e9, 2.1), (6e9, 2e9, 5.0)]
    assert calibration.fit_recompute(plain, checkpointed) == pytest.approx(1e9)  # medians 1.1 and 3.0
    assert calibration.fit_recompute(plain, [(3e9, 1e9, 1.0)]) is None  # no slower: nothing measured
    assert calibration.fit_recompute(plain, [(9e9, 1e9, 5.0)]) is None  # no plain steps of that length
    assert calibration.fit_recompute(plain, []) is None
    assert calibration.checkpointed_lengths([32, 96, 192]) == [96, 192]
    assert calibration.checkpointed_lengths([40]) == [40]


def test_the_calibration_record_round_trips_and_replaces_an_old_one(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    folder, path = "/models/m", tmp_path / calibration.CACHE_FILE
    config = replace(CONFIG, gradient_checkpointing=False)
    # written before checkpointing was measured: a key per checkpointing setting, no recompute speed
    old = {"overhead_s": 0.4, "flops_per_s": 9e10, "points": [], "measured_at": "2026-12-01T10:00:00"}
    key = calibration.legacy_key(config, folder, False)
    path.write_text(json.dumps({calibration.machine_id("cpu"): {key: old}}), encoding="utf-8")
    assert calibration.cost_for(config, folder, "cpu") == CostModel(0.4, 9e10, "calibrated", None)
    checkpointed = replace(config, gradient_checkpointing=True)
    # no measured recompute: this machine's speed for other settings, the recompute counted as the rest
    assert calibration.cost_for(checkpointed, folder, "cpu") == CostModel(0.4, 9e10, "scaled", None)
    # an old calibration of the checkpointed settings themselves fitted its line over their flops
    old_checkpointed = {**old, "flops_per_s": 6e10, "measured_at": "2026-12-01T11:00:00"}
    both = {key: old, calibration.legacy_key(config, folder, True): old_checkpointed}
    path.write_text(json.dumps({calibration.machine_id("cpu"): both}), encoding="utf-8")
    assert calibration.cost_for(checkpointed, folder, "cpu") == CostModel(0.4, 6e10, "calibrated", None)

    cost = CostModel(0.3, 8e10, "calibrated", 2e10)
    replaced = calibration.save_cost(config, folder, "cpu", cost, [(1e9, 0.31)], [(2e9, 1e9, 0.4)])
    assert replaced == ["2026-12-01T10:00:00", "2026-12-01T11:00:00"]
    entries = json.loads(path.read_text(encoding="utf-8"))[calibration.machine_id("cpu")]
    assert list(entries) == [calibration.settings_key(config, folder)]  # the old one is gone, not shadowing
    assert entries[calibration.settings_key(config, folder)]["checkpointed_points"] == [[2e9, 1e9, 0.4]]
    # one calibration answers for checkpointing on and off
    assert calibration.cost_for(config, folder, "cpu") == cost
    assert calibration.cost_for(checkpointed, folder, "cpu") == cost
    # other settings: this machine's speed, its measured recompute too
    other = replace(config, quantization_bit="4")
    assert calibration.cost_for(other, folder, "cpu") == CostModel(0.3, 8e10, "scaled", 2e10)
    float32 = replace(config, cpu_bf16=not config.cpu_bf16)  # a speed of its own on a CPU with AMX
    assert calibration.cost_for(float32, folder, "cpu").source == "scaled"


def test_a_calibration_is_kept_per_machine_and_settings(
    tiny_model_dir, dataset, tmp_path, monkeypatch, one_torch_thread
):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    config = replace(
        TrainConfig(), model_name_or_path=str(tiny_model_dir), dataset=str(dataset), cutoff_len=128, lora_rank=2
    )
    assert calibration.cost_for(config, str(tiny_model_dir), "cpu").source == "rough"
    lines = []
    cost = calibration.calibrate(config, log=lines.append)  # real steps of the trainer, on the tiny model
    entry = json.loads((tmp_path / calibration.CACHE_FILE).read_text(encoding="utf-8"))
    (settings,) = entry[calibration.machine_id("cpu")].values()
    assert calibration.calibration_lengths() == list(calibration.CALIBRATION_TOKENS)  # whatever the cutoff
    assert calibration.calibration_lengths(first_trained=60) == [68, 96, 192]  # 8 trained tokens at least
    assert calibration.calibration_lengths(first_trained=300) == [308, 404]  # a long system prompt
    # "calibration: 96 tokens a step, ..." and "calibration: 96 tokens a step with gradient checkpointing, ..."
    timed = [line for line in lines if line.startswith("calibration:") and "tokens a step" in line]
    plain = [int(line.split()[1]) for line in timed if "checkpointing" not in line]
    checkpointed = [int(line.split()[1]) for line in timed if "checkpointing" in line]
    assert plain[-1] == max(calibration.CALIBRATION_TOKENS) and len(plain) == len(set(plain)) >= 2
    assert checkpointed == calibration.checkpointed_lengths(plain)
    assert len(settings["points"]) == len(plain) * calibration.TIMED_STEPS
    assert len(settings["checkpointed_points"]) == len(checkpointed) * calibration.TIMED_STEPS
    assert len({f for f, _ in settings["points"]}) == len(plain)  # each length its own flops
    # with checkpointing: more flops than the same length without, the extra being the recompute
    plain_flops = {f for f, _ in settings["points"]}
    for flops, recompute, _ in settings["checkpointed_points"]:
        assert recompute > 0 and any(flops - recompute == pytest.approx(f) for f in plain_flops)
    assert cost.flops_per_s > 0 and cost.overhead_s >= 0 and lines[-1].startswith("calibrated:")
    assert settings["recompute_flops_per_s"] == cost.recompute_flops_per_s
    assert calibration.cost_for(config, str(tiny_model_dir), "cpu") == replace(cost, source="calibrated")
    other = replace(config, gradient_checkpointing=True)  # measured by the same calibration
    assert calibration.cost_for(other, str(tiny_model_dir), "cpu") == replace(cost, source="calibrated")


# ----------------------------------------------------------------------------------------- ETA
def _steps(seconds_each: list[float], start: dict) -> list[dict]:
    events, elapsed = [{"type": "start", **start}], 0.0
    first = start.get("resumed_from_step", 0)
    for i, seconds in enumerate(seconds_each, first + 1):
        elapsed += seconds
        events.append({"type": "step", "step": i, "elapsed_s": elapsed, "total_steps": start["total_steps"]})
    return events


def test_eta_follows_the_newest_steps_of_the_attempt():
    assert estimate.eta_s([{"type": "start", "total_steps": 100}]) is None
    early = _steps([3.0, 3.0, 3.0], {"total_steps": 100})
    assert estimate.eta_s(early) == pytest.approx(3.0 * 97)
    # 10 slow steps, then 20 at 1 s: the window of the newest 20 steps says 1 s a step
    later = _steps([3.0] * 10 + [1.0] * 20, {"total_steps": 100})
    assert estimate.eta_s(later) == pytest.approx(1.0 * 70)
    assert progress_of(later).eta_s == pytest.approx(70)  # what the Train tab's progress line shows
    # a resumed attempt counts its own steps only, not the earlier attempt's
    resumed = later + _steps([2.0, 2.0], {"total_steps": 100, "resumed_from_step": 30})
    assert estimate.eta_s(resumed) == pytest.approx(2.0 * 68)
    done = _steps([1.0] * 5, {"total_steps": 5})
    assert estimate.eta_s(done) == 0


# ------------------------------------------------------------------------------- the train tab
@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """What the estimate handlers use of the app: the runs folder and the runner (no page built)."""
    from webui.context import AppContext
    from webui.runner import Runner

    runner = Runner(tmp_path_factory.mktemp("runs"))
    return AppContext(runs_dir=runner.runs_dir, runner=runner, chat=None, page=None)


def test_the_train_tab_shows_the_estimate_with_the_plans_steps(ctx, tiny_model_dir, dataset, tmp_path, monkeypatch):
    from tests.webui_helpers import form
    from webui.tabs import train

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    values = form(tiny_model_dir, dataset, max_steps=-1, num_train_epochs=3.0)
    plan = train.plan_view(ctx, lang="en", **values)["plan"]
    shown = train.estimate_view(ctx, lang="en", **values)["estimate"]
    steps = plan.split("**")[3]  # "**Effective batch 2** · 6 steps per epoch · **18 steps** in total"
    assert steps.endswith(" steps") and f"× {steps}" in shown
    assert "rough default speed" in shown and "peak RAM" in shown and "Will not fit" not in shown
    assert "weights" in shown and "activations" in shown and "cutoff_len" not in shown  # lengths from the data
    assert "预估" in train.estimate_view(ctx, lang="zh", **values)["estimate"]

    monkeypatch.setattr(estimate, "available_bytes", lambda device: 50 * 2**20)
    refused = train.estimate_view(ctx, lang="en", **values)["estimate"]
    assert "Will not fit" in refused and "50 MB of RAM free" in refused
    assert "gradient_checkpointing → True" in refused and "quantization_bit → 4" in refused

    assert "while loading" not in shown  # training sets this peak
    est = estimate.preflight(train.form_config(ctx, values, run_name="preview"), None)
    converting = replace(est, memory=replace(est.memory, loading=est.memory.total))  # loading sets the peak
    assert "the peak comes while loading" in train.estimate_markdown(converting, TrainConfig(), "en")

    no_data = train.estimate_view(ctx, lang="en", **{**values, "dataset": str(tmp_path / "missing.jsonl")})
    assert "cutoff_len (64 tokens)" in no_data["estimate"]
    assert train.estimate_view(ctx, lang="en", **{**values, "cutoff_len": 0}) == {"estimate": ""}  # the plan says why


def test_calibrate_refuses_a_second_calibration(ctx, tiny_model_dir, dataset, tmp_path, monkeypatch):
    from tests.webui_helpers import form
    from webui.tabs import train

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    values = form(tiny_model_dir, dataset)
    with train._calibrating:
        updates = list(train.calibrate(ctx, lang="en", **values))
    assert updates == [{"estimate_status": "A calibration is already running."}]
