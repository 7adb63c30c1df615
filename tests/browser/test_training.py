"""One training run on the tiny model, followed in a real browser from Start to chat.

The tests share the run and go in file order: it streams, survives a reload, refuses a second
Start, stops, shows up on the runs tab, answers on the chat tab, and is overlaid with another run.
max_steps is far more than the tests need, so the run is always going until the Stop test stops it.
"""

import json
import re
import shutil

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright not installed: browser tests skipped").expect

RUN = "e2e-run"
MAX_STEPS = 3000
COLOURED = re.compile(r"^(#|rgb)")  # a stroke a person can see (vega leaves it unset otherwise)


@pytest.fixture(scope="module")
def training(open_window, tiny_model_dir):
    """The window that started the run: tiny model, small batches, eval every 10 steps."""
    window = open_window()
    page = window.open().page
    window.set_model(tiny_model_dir)
    window.tab("2 · Train")
    page.locator("#lt-run-name textarea").fill(RUN)
    for name, value in (
        ("max_steps", MAX_STEPS),
        ("per_device_train_batch_size", 2),
        ("cutoff_len", 128),
        ("val_size", 0.05),
        ("learning_rate", 1e-4),
    ):
        window.field(name).fill(str(value))
    page.get_by_text("Advanced", exact=True).click()
    window.field("eval_steps").fill("10")
    expect(page.locator("#lt-plan")).to_contain_text(f"{MAX_STEPS} steps")  # the form holds our values

    page.locator("#lt-start").click()
    expect(page.locator("#lt-train-msg")).to_contain_text(f"Started run {RUN}")
    expect(page.locator("#lt-progress")).to_contain_text(f"{RUN} · running", timeout=240_000)
    yield window
    window.close()


@pytest.fixture(scope="module")
def finished_run(training, app):
    """The run once it has stopped: by the Stop test, or here (STOP file) if that test failed early."""
    app.stop_workers()
    return RUN


def test_start_streams_the_loss_curve_and_the_progress(training):
    page = training.page
    expect(page.locator("#lt-start")).to_be_disabled()
    expect(page.locator("#lt-start-why")).to_have_text(f"A job is running ({RUN}): stop it first.")
    expect(page.locator("#lt-stop")).to_be_enabled()

    training.wait_for_points_above(1)
    expect(training.line("train")).to_have_attribute("stroke", COLOURED)
    training.wait_for_legend(["train", "eval"])  # both series named from the first point on
    points, step = training.points(), training.step()
    training.wait_for_points_above(points)  # the curve grows...
    training.wait_for_step_above(step)  # ...and the progress line moves
    expect(page.locator("#lt-progress")).to_contain_text(f"/{MAX_STEPS}")
    expect(page.locator("#lt-log textarea")).to_have_value(re.compile(r"step \d+/"))

    # The eval curve starts later (first eval at step 10) and is drawn in its own colour too.
    training.wait_for_points_above(1, series="eval")
    expect(training.line("eval")).to_have_attribute("stroke", COLOURED)
    assert training.line("eval").get_attribute("stroke") != training.line("train").get_attribute("stroke")


def test_a_reload_mid_run_brings_the_chart_and_the_progress_back(training):
    page = training.page
    training.wait_for_points_above(2)
    points, step = training.points(), training.step()

    page.reload()
    training.tab("2 · Train")
    expect(page.locator("#lt-progress")).to_contain_text(f"{RUN} · running")
    training.wait_for_points_above(points - 1)  # the whole curve is back...
    assert training.step() >= step
    expect(training.line("train")).to_have_attribute("stroke", COLOURED)
    expect(training.line("eval")).to_have_attribute("stroke", COLOURED)
    training.wait_for_points_above(training.points())  # ...and keeps growing
    training.wait_for_step_above(training.step())
    expect(page.locator("#lt-start")).to_be_disabled()


def test_a_second_start_while_a_run_is_going_is_refused(training, open_window, app, tiny_model_dir):
    # The window that started the run does not offer Start again while it runs.
    expect(training.page.locator("#lt-start")).to_be_disabled()

    # A second person whose page has not heard of the run yet (its one-second monitor poll held
    # back, as on a slow network, so Start still looks available) presses Start: the server
    # refuses and the page says why.
    poll = app.fn_index("poll")

    def hold_poll(route):
        if json.loads(route.request.post_data or "{}").get("fn_index") == poll:
            route.fulfill(status=200, content_type="application/json", body=json.dumps({"event_id": "held"}))
        else:
            route.continue_()

    other = open_window()
    try:
        other.page.route("**/gradio_api/queue/join*", hold_poll)
        other.open()
        other.set_model(tiny_model_dir)
        other.tab("2 · Train")
        other.page.locator("#lt-run-name textarea").fill("second-run")
        start = other.page.locator("#lt-start")
        expect(start).to_be_enabled()
        start.click()
        expect(other.page.locator("#lt-train-error")).to_contain_text(
            f"A job is already running ({RUN}): stop it, or wait for it to finish."
        )
        assert app.run_names() == [RUN]  # no second run folder, no second worker

        # Once its monitor catches up, that page shows the running job, and no Start either.
        other.page.unroute("**/gradio_api/queue/join*")
        other.page.reload()
        other.tab("2 · Train")
        expect(other.page.locator("#lt-progress")).to_contain_text(f"{RUN} · running")
        expect(other.page.locator("#lt-start")).to_be_disabled()
    finally:
        other.close()


def test_stop_ends_the_run_and_the_runs_tab_lists_it(training):
    page = training.page
    page.locator("#lt-stop").click()
    expect(page.locator("#lt-train-msg")).to_contain_text(f"Stopping {RUN}")
    expect(page.locator("#lt-progress")).to_contain_text(f"{RUN} · stopped at step", timeout=180_000)
    expect(page.locator("#lt-start")).to_be_enabled()
    expect(page.locator("#lt-start-why")).to_have_text("")
    expect(page.locator("#lt-stop")).to_be_disabled()

    training.tab("Runs")
    row = page.locator("#lt-runs-table tr", has_text=RUN)
    expect(row).to_contain_text("stopped")
    expect(row).to_contain_text(f"/{MAX_STEPS}")


def engine_reply(app, run: str, question: str, use_adapter: bool) -> str:
    """What core.chat answers (greedy, 16 tokens, the run's system prompt): what its pane must show."""
    import yaml

    from core.chat import ChatModels, GenerationSettings

    folder = app.runs_dir / run
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    settings = GenerationSettings(system_prompt=config.get("system_prompt") or "", temperature=0.0, max_new_tokens=16)
    return ChatModels().reply(
        [{"role": "user", "content": question}],
        settings,
        model_name_or_path=config["model_name_or_path"],
        adapter=folder / "adapter",
        use_adapter=use_adapter,
    )


def test_chat_with_the_finished_run_shows_base_and_tuned_side_by_side(finished_run, tailor, app):
    question = "What is the return policy?"
    page = tailor.open().page
    tailor.tab("3 · Chat")
    expect(page.locator("#lt-chat-run input")).to_have_value(re.compile(re.escape(finished_run)))
    tuned, base = page.locator("#lt-chat-tuned"), page.locator("#lt-chat-base")
    expect(tuned).to_contain_text(f"Tuned · {finished_run}")
    expect(base).to_be_visible()

    short = page.get_by_role("spinbutton", name="number input for Max new tokens")
    short.fill("16")  # a tiny random model rambles: 16 tokens are enough to see a reply
    short.press("Enter")
    page.locator("#lt-chat-input textarea").fill(question)
    page.locator("#lt-chat-send").click()

    # The tuned model answers first, then the base model (adapter off) in its own pane. The tiny
    # random base model answers printable junk; the tuned one can be only spaces (trained longer,
    # the space becomes its favourite token), which the page shows as an empty bubble: each pane
    # must show text exactly when core.chat's own answer has some.
    for pane in (tuned, base):
        expect(pane.locator("[data-testid='user']")).to_have_count(1, timeout=180_000)
        expect(pane.locator("[data-testid='user']")).to_contain_text(question)
    expect(base.locator("[data-testid='bot']")).to_have_text(re.compile(r"\S"), timeout=180_000)
    for pane, use_adapter in ((tuned, True), (base, False)):
        reply = pane.locator("[data-testid='bot']")
        expect(reply).to_have_count(1)
        printable = engine_reply(app, finished_run, question, use_adapter).strip() != ""
        expect(reply).to_have_text(re.compile(r"\S" if printable else r"^\s*$"))
    left, right = tuned.bounding_box(), base.bounding_box()
    assert left["x"] + left["width"] <= right["x"] + 1 and abs(left["y"] - right["y"]) < 40, (left, right)
    assert tailor.page_errors == []


def test_the_runs_tab_overlays_two_runs_each_in_its_colour(finished_run, tailor, app):
    # A second finished run: a copy of this one's folder, as an earlier session would have left it.
    shutil.copytree(app.runs_dir / finished_run, app.runs_dir / "earlier-run")
    page = tailor.open().page
    tailor.tab("Runs")
    expect(page.locator("#lt-runs-table tr", has_text="earlier-run")).to_contain_text("stopped")

    def line(run):
        return page.locator(f"[aria-roledescription='line mark'][aria-label$='run: {run}']")

    overlay = page.locator("#lt-runs-overlay")
    overlay.get_by_text(finished_run, exact=True).click()
    expect(line(finished_run)).to_have_attribute("stroke", COLOURED)
    overlay.get_by_text("earlier-run", exact=True).click()  # ticked second: drawn in colour too
    expect(line("earlier-run")).to_have_attribute("stroke", COLOURED)
    expect(line(finished_run)).to_have_attribute("stroke", COLOURED)
    assert line("earlier-run").get_attribute("stroke") != line(finished_run).get_attribute("stroke")
