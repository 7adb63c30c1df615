"""Browser tests: the real app (`python -m webui`) in its own process, driven by Debian's chromium
through Playwright, the way a person clicks it.

Skipped, with the reason printed by `make test` (pytest -rs), where chromium is not installed.
On a failure, a screenshot and the console log of every open page, and the server's log, are saved
under tests/browser/artifacts/<test>/ and the failure report names that folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.paths import PROJECT_ROOT
from tests.webui_helpers import free_port

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}  # wide enough for the chat panes to sit side by side
SERVER_START_S = 180  # importing gradio and torch on two busy cores
EXPECT_TIMEOUT_MS = 60_000  # what expect() waits for by default; the slow steps pass their own


def pytest_collection_modifyitems(config, items):
    """Mark every browser test skipped, with a reason -rs prints, where the browser is missing."""
    if CHROMIUM is not None:
        return
    skip = pytest.mark.skip(reason="chromium not found: browser tests skipped (apt-get install chromium)")
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


# ------------------------------------------------------------------------------------ the server
@dataclass
class App:
    url: str
    runs_dir: Path
    log: Path
    process: subprocess.Popen

    def fn_index(self, api_name: str) -> int:
        """The index the page sends with an event (e.g. the monitor's 'poll' tick)."""
        with urllib.request.urlopen(self.url + "config", timeout=30) as response:
            config = json.load(response)
        return next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == api_name)

    def run_names(self) -> list[str]:
        return sorted(p.name for p in self.runs_dir.iterdir() if (p / "config.yaml").is_file())

    def stop_workers(self, timeout_s: float = 120) -> None:
        """Stop any training process the tests left running (the server does not stop it on exit:
        closing the page must not stop training). STOP file first, then the process group."""
        from core.events import RunFolder
        from core.runs import live_worker_pid

        runs = [RunFolder(p) for p in self.runs_dir.iterdir() if p.is_dir()]
        live = [(run, live_worker_pid(run)) for run in runs if live_worker_pid(run)]
        for run, _ in live:
            run.request_stop()
        deadline = time.monotonic() + timeout_s
        for run, pid in live:
            while live_worker_pid(run) and time.monotonic() < deadline:
                time.sleep(0.5)
            if live_worker_pid(run):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="session")
def app(tmp_path_factory) -> App:
    """`python -m webui --port <free port> --runs-dir <tmp>`, up once the port answers."""
    root = tmp_path_factory.mktemp("browser-app")
    runs_dir, log = root / "runs", root / "server.log"
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "webui", "--port", str(port), "--runs-dir", str(runs_dir)],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = App(f"http://127.0.0.1:{port}/", runs_dir, log, process)
    global _SERVER_LOG
    _SERVER_LOG = log
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"python -m webui exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(server.url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"python -m webui did not answer on {server.url} within {SERVER_START_S} s:\n"
                f"{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.5)
    yield server
    server.stop_workers()
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ------------------------------------------------------------------------------------ the browser
_OPEN: list[Tailor] = []  # every page open right now: a failure saves each one
_SERVER_LOG: Path | None = None


class Tailor:
    """One browser window on the app, with the few moves a person makes (all waits are expect()'s)."""

    def __init__(self, context, app: App):
        self.context, self.app = context, app
        self.page = context.new_page()
        self.console: list[str] = []
        self.page_errors: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        self.page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        self.page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        _OPEN.append(self)

    def open(self) -> Tailor:
        """Load the page and wait until the first visit's dataset preview has come in."""
        from playwright.sync_api import expect

        self.page.goto(self.app.url)
        expect(self.page.locator("#lt-data-summary")).to_contain_text("conversations", timeout=120_000)
        return self

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name, exact=True).click()

    def field(self, name: str):
        """The input of a form field by its TrainConfig name (elem_id lt-<name>)."""
        return self.page.locator(f"#lt-{name}").locator("input, textarea").first

    def set_model(self, path: Path | str) -> None:
        self.page.locator("#lt-model textarea").fill(str(path))

    def choose(self, dropdown_id: str, option: str) -> None:
        self.page.locator(f"#{dropdown_id} input").click()
        self.page.get_by_role("option", name=option, exact=True).click()

    def progress(self) -> str:
        return self.page.locator("#lt-progress").inner_text()

    def step(self) -> int:
        """The step the monitor shows ('step 12/3000'), 0 before the first one."""
        found = re.search(r"step (\d+)/", self.progress())
        return int(found.group(1)) if found else 0

    def wait_for_step_above(self, step: int, timeout_ms: int = 120_000) -> None:
        self.page.wait_for_function(
            "n => { const m = /step (\\d+)\\//.exec(document.querySelector('#lt-progress').innerText);"
            " return m !== null && Number(m[1]) > n; }",
            arg=step,
            timeout=timeout_ms,
        )

    POINTS = "#lt-loss-plot [aria-roledescription='point'][aria-label*='series: {series}']"

    def points(self, series: str = "train") -> int:
        """Points the loss chart draws for a series (vega's SVG, one mark per logged step)."""
        return self.page.locator(self.POINTS.format(series=series)).count()

    def wait_for_points_above(self, count: int, series: str = "train", timeout_ms: int = 120_000) -> None:
        self.page.wait_for_function(
            "([sel, n]) => document.querySelectorAll(sel).length > n",
            arg=[self.POINTS.format(series=series), count],
            timeout=timeout_ms,
        )

    def line(self, series: str):
        """The drawn line of a series: its stroke is the colour a person sees."""
        return self.page.locator(f"#lt-loss-plot [aria-roledescription='line mark'][aria-label*='series: {series}']")

    LEGEND = """() => {
        const box = document.querySelector('#lt-loss-plot').getBoundingClientRect();
        return [...document.querySelectorAll('#lt-loss-plot .role-legend-label text')]
            .filter(t => { const r = t.getBoundingClientRect();
                           return r.height > 0 && r.top >= box.top && r.bottom <= box.bottom; })
            .map(t => t.textContent); }"""

    def legend(self) -> list[str]:
        """The loss chart's legend entries a person can see: drawn, and inside the chart's box (a
        legend below a fixed-height chart is cut off by it)."""
        return self.page.evaluate(self.LEGEND)

    def wait_for_legend(self, names: list[str], timeout_ms: int = 60_000) -> None:
        self.page.wait_for_function(
            f"names => JSON.stringify(({self.LEGEND})()) === JSON.stringify(names)", arg=names, timeout=timeout_ms
        )

    def close(self) -> None:
        if self in _OPEN:
            _OPEN.remove(self)
        self.context.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect, sync_playwright

    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # only this session's failures
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def open_window(browser, app):
    """open_window() -> a new Tailor in its own browser context (its own gradio session, like a
    second person); the caller closes it."""

    def open_one() -> Tailor:
        context = browser.new_context(viewport=VIEWPORT, locale="en-US")
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        return Tailor(context, app)

    return open_one


@pytest.fixture
def tailor(open_window):
    window = open_window()
    yield window
    window.close()


# ------------------------------------------------------------------------------- failure artifacts
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or HERE not in Path(str(item.path)).resolve().parents:
        return
    folder = ARTIFACTS / _safe(f"{item.name}-{report.when}")
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[str] = []
    for number, window in enumerate(list(_OPEN), start=1):
        try:
            window.page.screenshot(path=str(folder / f"page{number}.png"), full_page=True, timeout=20_000)
            saved.append(f"page{number}.png ({window.page.url})")
        except Exception as err:  # noqa: BLE001 - a page that cannot be captured must not hide the failure
            saved.append(f"page{number}.png not taken: {type(err).__name__}: {err}")
        (folder / f"page{number}-console.log").write_text("\n".join(window.console) + "\n", encoding="utf-8")
        saved.append(f"page{number}-console.log ({len(window.console)} lines, {len(window.page_errors)} page errors)")
    if _SERVER_LOG is not None and _SERVER_LOG.is_file():
        shutil.copyfile(_SERVER_LOG, folder / "server.log")
        saved.append("server.log")
    report.sections.append(("browser artifacts", f"saved in {folder}:\n  " + "\n  ".join(saved)))
