"""The train form in a real browser: every registry field is there, and a value the config refuses
turns Start off with a line saying why, in the page's language."""

import pytest

from core.config import fields_in_group
from webui import i18n

expect = pytest.importorskip("playwright.sync_api", reason="playwright not installed: browser tests skipped").expect


def test_an_invalid_value_turns_start_off_and_says_why(tailor):
    page = tailor.open().page
    tailor.tab("2 · Train")
    start, why = page.locator("#lt-start"), page.locator("#lt-start-why")
    expect(start).to_be_enabled()
    expect(why).to_have_text("")

    page.get_by_text("Advanced", exact=True).click()
    for name in fields_in_group("advanced"):  # packing, trained_tokens_loss, fused_lora_dropout among them
        expect(page.locator(f"#lt-{name}")).to_contain_text(i18n.field_label(name))

    tailor.field("learning_rate").fill("-1")
    expect(start).to_be_disabled()
    expect(why).to_have_text(i18n.t("train.why.invalid", "en"))
    expect(page.locator("#lt-plan")).to_contain_text("learning_rate must be > 0")

    tailor.choose("lt-lang", "简体中文")
    tailor.tab(i18n.t("tab.train", "zh"))
    expect(why).to_have_text(i18n.t("train.why.invalid", "zh"))

    tailor.field("learning_rate").fill("0.0002")
    expect(start).to_be_enabled()
    expect(why).to_have_text("")
    assert tailor.page_errors == []
