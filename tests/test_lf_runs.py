"""A LLaMA-Factory output folder opened as a run: its curve in the Runs tab, chat with its adapter,
export it, delete only our side.

The folder is shaped like LLaMA-Factory's output_dir: a real PEFT adapter of the tiny model (with
non-zero lora_B, so it changes the model) and the tokenizer at its top, trainer_log.jsonl lines as
its LogCallback writes them, trainer_state.json, all_results.json, training_args.yaml and a
checkpoint folder.
"""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
import yaml

from core.chat import ChatModels, GenerationSettings
from core.errors import UserInputError
from core.export import merge_adapter, zip_adapter
from core.lf_runs import open_lf_output
from core.runs import RunStatus, delete_run, list_runs, loss_points, run_state
from webui.context import AppContext
from webui.tabs import runs as runs_tab

LOSSES = [2.5, 2.1, 1.7, 1.4]


def log_line(step: int, loss: float | None = None, eval_loss: float | None = None) -> dict:
    """One trainer_log.jsonl line as LLaMA-Factory's LogCallback writes it (keys without a value left out)."""
    line = {
        "current_steps": step,
        "total_steps": 8,
        "loss": loss,
        "eval_loss": eval_loss,
        "lr": 1e-4 * (1 - step / 8),
        "epoch": step / 4,
        "percentage": step / 8 * 100,
        "elapsed_time": f"0:00:{step * 3:02d}",
        "remaining_time": f"0:00:{(8 - step) * 3:02d}",
    }
    return {key: value for key, value in line.items() if value is not None}


@pytest.fixture
def lf_output(tmp_path, tiny_model_dir):
    """A finished LLaMA-Factory LoRA run of the tiny model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "saves" / "tiny" / "lora" / "train_2026-12-01"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # PEFT starts B at zero: an adapter that changes nothing tells nothing
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    lines = [log_line(2 * (i + 1), loss=loss) for i, loss in enumerate(LOSSES)]
    lines.insert(2, log_line(4, eval_loss=1.9))
    (folder / "trainer_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 8, "log_history": []}), encoding="utf-8")
    (folder / "all_results.json").write_text(json.dumps({"epoch": 2.0, "train_loss": 1.9}), encoding="utf-8")
    args = {"stage": "sft", "model_name_or_path": str(tiny_model_dir), "dataset": "identity", "lora_rank": 4}
    (folder / "training_args.yaml").write_text(yaml.safe_dump(args), encoding="utf-8")
    (folder / "checkpoint-4").mkdir()
    (folder / "checkpoint-4" / "adapter_model.safetensors").write_bytes(b"an older adapter")
    return folder


@pytest.fixture
def ctx(tmp_path):
    return AppContext.create(tmp_path / "runs", page=None)


def test_the_runs_tab_opens_it_and_draws_its_trainer_log(ctx, lf_output):
    updates = runs_tab.open_folder(ctx, str(lf_output), [], "en")
    assert updates["runs_error"] == ""
    name = lf_output.name
    assert updates["runs_select"]["value"] == name and updates["runs_overlay"]["value"] == [name]
    frame = updates["runs_plot"]
    train = frame[frame["run"] == name]
    assert train["step"].tolist() == [2, 4, 6, 8] and train["loss"].tolist() == LOSSES
    assert frame[frame["run"] == f"{name} (eval)"][["step", "loss"]].values.tolist() == [[4, 1.9]]
    assert "model_name_or_path: " + str(ctx.runs_dir.parent) not in updates["runs_config"]  # not our folder
    assert "dataset: identity" in updates["runs_config"] and "stage" not in updates["runs_config"]

    table = updates["runs_table"]
    row = table[table["run"] == name].iloc[0]
    assert (row["status"], row["steps"], row["final loss"]) == ("done", "8/8", "1.4000")
    # The overlay a user ticks later reads the same curve.
    assert runs_tab.overlay_plot(ctx, [name])["loss"].tolist()[:1] == [2.5]


def test_state_chat_and_export_go_through_the_run_folder(ctx, lf_output, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = open_lf_output(ctx.runs_dir, lf_output)
    state = run_state(run.path)
    assert state.status == RunStatus.DONE and state.can_chat and state.can_export and not state.can_resume
    assert state.config["model_name_or_path"] == str(tiny_model_dir)  # adapter_config's base model
    assert [p["loss"] for p in loss_points(run.all_events()) if p["series"] == "train"] == LOSSES

    # Chat: the LF adapter goes onto the base model, its weights as saved.
    models = ChatModels()
    models.prepare(state.config["model_name_or_path"], adapter=state.run.adapter)
    assert isinstance(models._model, PeftModel)
    saved = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), str(lf_output)
    )
    loaded = dict(models._model.named_parameters())
    for name, param in saved.named_parameters():
        if "lora_B" in name:
            assert torch.equal(loaded[name.replace(".default.", f".{models._model.active_adapter}.")], param)
    source = {"model_name_or_path": state.config["model_name_or_path"], "adapter": state.run.adapter}
    tuned = models.reply([{"role": "user", "content": "Hi"}], GenerationSettings(max_new_tokens=4), **source)
    assert isinstance(tuned, str)

    # Export: the adapter and tokenizer files, not LLaMA-Factory's logs or checkpoints.
    with zipfile.ZipFile(zip_adapter(run.path)) as archive:
        names = {n.split("/", 1)[1] for n in archive.namelist()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    assert not names & {"trainer_log.jsonl", "trainer_state.json", "all_results.json", "training_args.yaml"}
    assert not any(n.startswith("checkpoint-") for n in names)
    merged = AutoModelForCausalLM.from_pretrained(merge_adapter(run.path), dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, saved(ids).logits, atol=1e-5)
    assert not (lf_output / "merged").exists()  # written in our run folder, the LF folder is only read


def test_opening_again_refreshes_and_delete_keeps_the_lf_folder(ctx, lf_output):
    first = open_lf_output(ctx.runs_dir, lf_output)
    with open(lf_output / "trainer_log.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(log_line(10, loss=1.2)) + "\n")
    again = open_lf_output(ctx.runs_dir, lf_output)
    assert again.path == first.path and [r.name for r in list_runs(ctx.runs_dir)] == [lf_output.name]
    assert run_state(again.path).step == 10
    before = sorted(p.relative_to(lf_output) for p in lf_output.rglob("*"))
    delete_run(ctx.runs_dir, lf_output.name)
    assert not again.path.exists()
    assert sorted(p.relative_to(lf_output) for p in lf_output.rglob("*")) == before


def test_an_unfinished_lf_run_reads_as_interrupted(ctx, lf_output):
    (lf_output / "all_results.json").unlink()
    state = run_state(open_lf_output(ctx.runs_dir, lf_output).path)
    assert state.status == RunStatus.INTERRUPTED and state.step == 8


def test_folders_that_are_not_lf_outputs_are_refused(ctx, tmp_path, lf_output):
    cases = {
        tmp_path / "nowhere": "Folder not found",
        tmp_path: "is not a LLaMA-Factory output folder",
    }
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "config.yaml").write_text("dataset: x\n", encoding="utf-8")
    (ours / "adapter_config.json").write_text("{}", encoding="utf-8")
    cases[ours] = "is not a LLaMA-Factory output folder"
    for folder, message in cases.items():
        with pytest.raises(UserInputError, match=message):
            open_lf_output(ctx.runs_dir, folder)
    updates = runs_tab.open_folder(ctx, str(tmp_path / "nowhere"), [], "en")
    assert "Folder not found" in updates["runs_error"]
    (lf_output / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}), encoding="utf-8")
    (lf_output / "training_args.yaml").unlink()
    with pytest.raises(UserInputError, match="no base model named"):
        open_lf_output(ctx.runs_dir, lf_output)
