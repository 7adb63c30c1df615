"""The runner starts the real worker (`python -m core.train`) on the tiny model, stops it, resumes it,
notices a dead worker, and refuses a second job. No timing assertions: waits are generous deadlines."""

import json
import os
import shutil
import signal
import time
from dataclasses import asdict

import pytest

from core.config import TrainConfig
from core.errors import UserInputError
from core.events import RunFolder
from core.lock import LOCK_FILE, LockHeld, LockOwner
from core.runs import (
    RESERVED_NAMES,
    delete_run,
    list_runs,
    live_worker_pid,
    logged_status,
    loss_points,
    run_path,
    run_state,
)
from tests.conftest import qa_records, write_jsonl
from webui.runner import Job, JobRunning, Runner
from webui.tabs.data import UPLOADS

DEADLINE_S = 240  # a loaded 2-core machine can take a while to import torch in the worker


def tiny_config(runs_dir, model_dir, data, name, **overrides) -> TrainConfig:
    values = dict(
        model_name_or_path=str(model_dir),
        dataset=str(data),
        output_dir=str(runs_dir / name),
        max_steps=1000,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        cutoff_len=64,
        lora_rank=4,
        lora_alpha=8,
        save_steps=1000,
        learning_rate=1e-3,
    )
    values.update(overrides)
    return TrainConfig(**values)


def wait_for(predicate, what: str, timeout: float = DEADLINE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def steps(runner: Runner, run: RunFolder) -> list[dict]:
    return [e for e in runner.events(run) if e["type"] == "step"]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "qa.jsonl", qa_records(12))


@pytest.fixture(scope="module")
def stopped_run(runs_dir, data, tiny_model_dir):
    """A run started through the runner, stopped after two steps; shared by the tests below."""
    runner = Runner(runs_dir)
    run = runner.start(tiny_config(runs_dir, tiny_model_dir, data, "first"))
    try:
        with pytest.raises(JobRunning, match="already running"):
            runner.start(tiny_config(runs_dir, tiny_model_dir, data, "second"))
        wait_for(lambda: len(steps(runner, run)) >= 2, "two step events")
        assert live_worker_pid(run) is not None
        with pytest.raises(UserInputError, match="training right now"):
            delete_run(runs_dir, "first")
        assert runner.stop() == run
    finally:
        runner.stop()
        assert runner.wait(DEADLINE_S)
    return runner, run


def test_stop_saves_a_loadable_adapter_and_a_checkpoint(stopped_run, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    runner, run = stopped_run
    events = run.all_events()
    assert logged_status(events) == "stopped"
    assert events[-1]["reason"] == "STOP file"
    assert run.latest_checkpoint() is not None
    assert live_worker_pid(run) is None and not (run.path / "worker.pid").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run.adapter)
    assert any("lora_B" in name for name, _ in model.named_parameters())
    assert runner.current() == run and runner.running() is None


def test_events_are_read_incrementally_and_the_curve_grows(stopped_run):
    runner, run = stopped_run
    first = runner.events(run)
    assert runner.events(run) == first  # nothing new: same list, read from the cached offset
    points = loss_points(first)
    assert [p["series"] for p in points] == ["train"] * len(points)
    assert [p["step"] for p in points] == sorted(p["step"] for p in points)


def test_list_runs_reports_status_and_final_loss(stopped_run, runs_dir):
    _, run = stopped_run
    (summary,) = [r for r in list_runs(runs_dir) if r.name == "first"]
    assert summary.status == "stopped" and summary.has_adapter
    assert summary.final_loss is not None and summary.step >= 2
    assert summary.config["lora_rank"] == 4


def test_resume_continues_from_the_checkpoint(stopped_run):
    runner, run = stopped_run
    checkpoint_step = int(run.latest_checkpoint().name.split("-")[-1])
    resumed = runner.resume(run.path)
    try:
        assert resumed.path == run.path
        wait_for(lambda: [e for e in runner.events(run) if e["type"] == "start"][1:], "the resumed start event")
        start = [e for e in runner.events(run) if e["type"] == "start"][-1]
        assert start["resumed_from_step"] == checkpoint_step
    finally:
        runner.stop()
        assert runner.wait(DEADLINE_S)
    assert logged_status(run.all_events()) == "stopped"


def test_a_fresh_start_into_an_existing_run_folder_is_refused(stopped_run, runs_dir, data, tiny_model_dir):
    runner, _ = stopped_run
    with pytest.raises(UserInputError, match="already holds a run"):
        runner.start(tiny_config(runs_dir, tiny_model_dir, data, "first"))


def test_a_dead_worker_is_reported_as_an_error(runs_dir, data, tiny_model_dir):
    runner = Runner(runs_dir)
    run = runner.start(tiny_config(runs_dir, tiny_model_dir, data, "killed"))
    try:
        os.killpg(int((run.path / "worker.pid").read_text()), signal.SIGKILL)  # an OOM kill looks like this
    except BaseException:
        runner.stop()  # never leave a worker behind
        raise
    assert runner.wait(DEADLINE_S)
    final = run.all_events()[-1]
    assert final["type"] == "error" and "SIGKILL" in final["message"]
    assert list_runs(runs_dir)[0].status == "error"
    delete_run(runs_dir, "killed")
    assert not run.path.exists()


def test_an_unanswered_stop_falls_back_to_sigterm(runs_dir, data, tiny_model_dir):
    """With no grace the watcher sends SIGTERM at once; the worker, still importing, dies of it and
    the runner records the stop (no adapter: nothing was trained)."""
    runner = Runner(runs_dir, stop_grace_s=0.0, kill_grace_s=DEADLINE_S)
    run = runner.start(tiny_config(runs_dir, tiny_model_dir, data, "sigterm"))
    runner.stop()
    assert runner.wait(DEADLINE_S)
    final = run.all_events()[-1]
    assert final["type"] == "stopped" and "SIGTERM" in final["reason"]


def test_a_new_runner_adopts_a_worker_that_is_still_training(runs_dir, data, tiny_model_dir):
    """A restarted server finds the job through worker.pid, shows it and can stop it."""
    first = Runner(runs_dir)
    run = first.start(tiny_config(runs_dir, tiny_model_dir, data, "adopted"))
    second = Runner(runs_dir)
    try:
        assert second.running().path == run.path
        with pytest.raises(JobRunning):
            second.start(tiny_config(runs_dir, tiny_model_dir, data, "other"))
    finally:
        second.stop()
        assert first.wait(DEADLINE_S) and second.wait(DEADLINE_S)
    assert logged_status(run.all_events()) in ("stopped", "error")


def test_run_names_cannot_escape_the_runs_folder(runs_dir):
    for bad in ("../x", "a/b", "", ".hidden", "x" * 101):
        with pytest.raises(UserInputError, match="not allowed"):
            run_path(runs_dir, bad)
    assert run_path(runs_dir, "ok-1.2_a") == runs_dir / "ok-1.2_a"


def test_the_folders_the_runs_folder_keeps_for_itself_are_not_runs(runs_dir):
    assert UPLOADS in RESERVED_NAMES  # the web UI keeps uploaded datasets in <runs>/uploads
    for name in ("uploads", "Uploads"):
        with pytest.raises(UserInputError, match="keeps its 'uploads' folder for itself"):
            run_path(runs_dir, name)
        with pytest.raises(UserInputError, match="keeps its 'uploads' folder for itself"):
            delete_run(runs_dir, name)
    (runs_dir / "uploads").mkdir(exist_ok=True)
    (runs_dir / "uploads" / "config.yaml").write_text("{}")  # looks like a run: still not one
    assert "uploads" not in [r.name for r in list_runs(runs_dir)]


def held_by_another_process(folder) -> LockOwner:
    """A lock in `folder` naming a live process that is not this one (pytest's parent)."""
    owner = LockOwner.of(os.getppid())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(json.dumps(asdict(owner)))
    return owner


def test_a_folder_another_trainer_holds_is_refused_shown_running_and_kept(runs_dir, data, tiny_model_dir):
    """A CLI trainer writing into the runs folder holds its lock: the runner starts no worker there,
    the runs list shows the run as running (not interrupted), and it cannot be deleted."""
    folder = runs_dir / "held"
    owner = held_by_another_process(folder)
    runner = Runner(runs_dir)
    with pytest.raises(LockHeld, match=f"pid {owner.pid}"):
        runner.start(tiny_config(runs_dir, tiny_model_dir, data, "held"))
    assert runner.running() is None and [p.name for p in folder.iterdir()] == [LOCK_FILE]
    (folder / "config.yaml").write_text("{}")
    RunFolder(folder).append_event("start", total_steps=10)
    assert run_state(folder).status == "running"
    with pytest.raises(UserInputError, match="training right now"):
        delete_run(runs_dir, "held")
    (folder / LOCK_FILE).unlink()  # its trainer gone without a final event
    assert run_state(folder).status == "interrupted"
    delete_run(runs_dir, "held")


def test_a_worker_refused_by_another_trainers_lock_leaves_that_run_alone(runs_dir):
    """Our worker lost the folder to a trainer that took it just before: the watcher must not end
    that trainer's run with an error event of ours."""
    folder = runs_dir / "lost"
    held_by_another_process(folder)
    run = RunFolder(folder)
    run.append_event("start", total_steps=10)
    runner = Runner(runs_dir)
    runner._finish(Job(run, process=None), code=2)
    assert [e["type"] for e in run.all_events()] == ["start"]
    shutil.rmtree(folder)
