"""Switching the page to 简体中文 in a real browser relabels tabs, fields and buttons."""

import pytest

from webui import i18n

expect = pytest.importorskip("playwright.sync_api", reason="playwright not installed: browser tests skipped").expect


def test_switching_to_chinese_changes_the_labels(tailor):
    page = tailor.open().page
    train_en, train_zh = i18n.t("tab.train", "en"), i18n.t("tab.train", "zh")
    assert train_en != train_zh
    expect(page.get_by_role("tab", name=train_en, exact=True)).to_be_visible()
    expect(page.locator("#lt-analyze")).to_have_text(i18n.t("data.analyze", "en"))

    tailor.choose("lt-lang", "简体中文")

    for key in ("tab.data", "tab.train", "tab.chat", "tab.runs", "tab.export"):
        expect(page.get_by_role("tab", name=i18n.t(key, "zh"), exact=True)).to_be_visible()
    expect(page.get_by_role("tab", name=train_en, exact=True)).to_have_count(0)
    expect(page.locator("#lt-model")).to_contain_text(i18n.field_label("model_name_or_path", "zh"))
    expect(page.locator("#lt-dataset")).to_contain_text(i18n.field_label("dataset", "zh"))
    expect(page.locator("#lt-analyze")).to_have_text(i18n.t("data.analyze", "zh"))

    page.get_by_role("tab", name=train_zh, exact=True).click()
    expect(page.locator("#lt-start")).to_have_text(i18n.t("train.start", "zh"))
    expect(page.locator("#lt-learning_rate")).to_contain_text(i18n.field_label("learning_rate", "zh"))
    assert tailor.page_errors == []
