"""A dataset larger than the quick sample in a real browser: its quick numbers appear on upload, the
exact count runs in the background while another tab answers, and its report replaces them."""

from __future__ import annotations

from playwright.sync_api import expect

from core.quick_lengths import QUICK_SAMPLE
from tests.conftest import write_jsonl
from tests.test_quick_lengths import varied_records


def test_an_upload_shows_quick_then_exact_numbers(tailor, tiny_model_dir, tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", varied_records(QUICK_SAMPLE + 2000))
    page = tailor.open().page
    tailor.set_model(tiny_model_dir)  # the tiny model's tokenizer: the exact count takes seconds
    tailor.tab("1 · Data")
    with page.expect_file_chooser() as chooser:
        page.locator("#lt-upload").get_by_role("button", name="Click to upload or drop files").click()
    chooser.value.set_files(str(path))

    report = page.locator("#lt-length-report")
    expect(report).to_contain_text("quick:", timeout=120_000)
    expect(report).to_contain_text("95% interval")
    tailor.tab("2 · Train")  # the page answers while the count runs
    expect(tailor.field("cutoff_len")).to_be_visible()
    tailor.tab("1 · Data")
    expect(report).to_contain_text("exact:", timeout=180_000)
    expect(report).not_to_contain_text("95% interval")
    expect(page.locator("#lt-length-progress")).to_have_text("")
    assert tailor.page_errors == []
