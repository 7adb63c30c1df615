"""Data tab in a real browser: the first visit, the token-length analysis, a broken upload, the
Augment panel's preview."""

import json
import re

import pytest

from core.paths import PROJECT_ROOT

expect = pytest.importorskip("playwright.sync_api", reason="playwright not installed: browser tests skipped").expect

DEMO = "datasets_demo/persona_en.jsonl"


def first_user_message(path) -> str:
    record = json.loads((PROJECT_ROOT / path).read_text(encoding="utf-8").splitlines()[0])
    return next(m["content"] for m in record["messages"] if m["role"] == "user")


def test_first_visit_previews_and_analyzes_the_demo_dataset(tailor, tiny_model_dir):
    page = tailor.open().page

    # The demo dataset is selected, listed among the choices, and its first conversation previewed.
    dataset = page.locator("#lt-dataset input")
    expect(dataset).to_have_value(DEMO)
    dataset.click()
    expect(page.get_by_role("option", name=DEMO)).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#lt-data-summary")).to_contain_text("556 conversations")
    expect(page.locator("#lt-data-preview [data-testid='user']").first).to_contain_text(first_user_message(DEMO))
    expect(page.locator("#lt-data-preview [data-testid='bot']").first).to_have_text(re.compile(r"\w"))

    # A newcomer tries a short cutoff on the train tab, then asks the data tab what fits.
    tailor.set_model(tiny_model_dir)  # the tiny model's tokenizer: the analysis takes seconds
    tailor.tab("2 · Train")
    tailor.field("cutoff_len").fill("64")
    tailor.tab("1 · Data")
    use = page.locator("#lt-use-suggested")
    expect(use).to_be_disabled()
    page.locator("#lt-analyze").click()

    report = page.locator("#lt-length-report")
    expect(report).to_contain_text("Suggested cutoff_len", timeout=120_000)
    expect(report).to_contain_text("(now 64)")
    expect(report.locator("td", has_text="total tokens")).to_be_visible()
    assert re.search(r"total tokens\s+\d+\s+\d+", report.inner_text()), report.inner_text()  # mean, p50, ...
    suggested = int(re.search(r"Suggested cutoff_len: (\d+)", report.inner_text()).group(1))
    assert suggested != 64

    histogram = page.locator("#lt-histogram svg")
    expect(histogram).to_be_visible()
    assert histogram.locator("rect").count() >= 3  # bars of examples per length bin
    expect(histogram).to_contain_text(f"suggested {suggested}")
    expect(histogram).to_contain_text("current cutoff 64")

    expect(use).to_be_enabled()
    expect(use).to_have_text(f"Use suggested cutoff ({suggested})")
    use.click()
    expect(page.locator(".lt-note")).to_contain_text(f"cutoff_len is now {suggested}")
    tailor.tab("2 · Train")
    expect(tailor.field("cutoff_len")).to_have_value(str(suggested))
    assert tailor.page_errors == []


def test_a_malformed_upload_names_the_line_and_the_page_keeps_working(tailor, tmp_path):
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    broken = tmp_path / "orders.jsonl"
    broken.write_text(
        json.dumps(good) + "\n" + json.dumps(good) + "\n" + '{"messages": [{"role": "user",\n', encoding="utf-8"
    )
    page = tailor.open().page

    with page.expect_file_chooser() as chooser:
        page.locator("#lt-upload").get_by_role("button", name="Click to upload or drop files").click()
    chooser.value.set_files(str(broken))

    problems = page.locator("#lt-data-problems")
    expect(problems).to_contain_text("orders.jsonl", timeout=60_000)
    expect(problems).to_contain_text("line 3")
    expect(problems).to_contain_text("not valid JSON")
    expect(page.locator("#lt-dataset input")).to_have_value(re.compile(r"orders\.jsonl$"))
    expect(page.locator("#lt-data-preview")).to_be_hidden()

    # Nothing crashed: picking the demo dataset again brings its preview back.
    tailor.choose("lt-dataset", DEMO)
    expect(page.locator("#lt-data-summary")).to_contain_text("556 conversations")
    expect(problems).to_have_text(re.compile(r"^\s*$"))
    expect(page.locator("#lt-data-preview [data-testid='user']").first).to_contain_text(first_user_message(DEMO))
    assert tailor.page_errors == []


def test_the_augment_panel_previews_new_phrasings_of_the_demo_facts(tailor, tmp_path):
    page = tailor.open().page
    page.get_by_text("Augment phrasings", exact=True).click()
    generator = page.locator("#lt-aug-generator")
    expect(generator.get_by_label("rules")).to_be_checked()
    expect(page.locator("#lt-aug_base_url")).to_be_hidden()  # the endpoint is for the openai generator only

    page.locator("#lt-aug-preview").click()
    table = page.locator("#lt-aug-table")
    expect(table).to_contain_text("Aurora costs $79", timeout=120_000)  # the demo's first fact, with its phrasings
    expect(table).to_contain_text("Aurora price?")
    expect(page.locator("#lt-aug-summary")).to_contain_text("556 → ")
    expect(page.locator("#lt-aug-report textarea")).to_have_value(re.compile("with the rules generator"))
    aurora = table.get_by_role("row").filter(has_text="Aurora costs $79").first  # fact, phrasings, new ones
    new_phrasings = aurora.get_by_role("gridcell").nth(2).inner_text()
    assert len([line for line in new_phrasings.splitlines() if line.strip()]) >= 3, new_phrasings
    expect(page.locator("#lt-aug-error")).to_have_text(re.compile(r"^\s*$"))
    table.scroll_into_view_if_needed()
    page.locator("#lt-augment-panel").screenshot(path=str(tmp_path / "augment-panel.png"))

    generator.get_by_label("openai").check()
    expect(page.locator("#lt-aug_base_url")).to_be_visible()
    expect(page.locator("#lt-aug_model")).to_be_visible()
    assert tailor.page_errors == []
