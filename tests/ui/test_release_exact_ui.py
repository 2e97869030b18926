"""Issue 17 in the browser: all 13 release buckets offered (text-to-video too), an uploaded image
proposes its nearest bucket, and an over-long prompt is blocked until the user ticks
"Render truncated, as the release does"."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from .conftest import ARTIFACTS, studio_page


@pytest.mark.slow
def test_buckets_image_proposal_and_truncation_choice(studio, tmp_path):
    url, _ = studio
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tall = tmp_path / "tall.png"
    Image.new("RGB", (600, 800), (30, 90, 150)).save(tall)  # 3:4 portrait
    lines = (__import__("pathlib").Path(__file__).parents[1] / "data" / "official_prompts.jsonl").read_text().splitlines()
    long_prompt = " ".join(json.loads(x)["prompt"] for x in lines if x.strip()) * 2
    with studio_page(url) as page:
        page.click("#bucket input")
        options = page.locator("ul[role=listbox] li").all_inner_texts()
        page.keyboard.press("Escape")
        assert len(options) == 13 and any("portrait 3:4 832x1088" in o for o in options), options
        assert any("landscape 5:2 1536x608" in o for o in options)

        page.get_by_text("Guidance (0 switches a branch off)").click()
        page.wait_for_function("(document.querySelector('#guidance-form') || {innerText: ''}).innerText"
                               ".includes('like classic CFG 4')", timeout=20_000)

        page.get_by_text("First frame (image to video)").click()  # open the accordion, as a person does
        page.wait_for_selector("#first-image input[type=file]", state="attached", timeout=20_000)
        page.set_input_files("#first-image input[type=file]", str(tall))
        page.wait_for_function("document.querySelector('#bucket input').value.includes('portrait 3:4')", timeout=30_000)

        page.wait_for_timeout(1500)  # let the image upload's recompile settle
        page.get_by_label("Edit the prompt by hand").check()
        page.wait_for_timeout(1500)
        page.locator("#prompt-text textarea").fill(long_prompt)
        page.locator("#prompt-text textarea").press("Tab")
        page.wait_for_function("document.querySelector('#prompt-lint').innerText.includes('too long')", timeout=30_000)
        too_long = "[...document.querySelectorAll('#prompt-lint .nava-lint')].find(e => e.innerText.includes('too long'))"
        lint = page.evaluate(f"{too_long}.innerText")
        assert "Render truncated, as the release does" in lint and "⛔" in lint, lint
        page.click("#render-btn")
        page.wait_for_timeout(1500)
        assert "Fix these before rendering" in page.inner_text("body")
        page.locator("#truncate-prompt input[type=checkbox]").check()
        page.wait_for_function(f"{too_long}.className.includes('nava-lint-warning')", timeout=30_000)
        assert "rendered truncated, as the release does" in page.evaluate(f"{too_long}.innerText")
        page.screenshot(path=str(ARTIFACTS / "studio_release_exact.png"), full_page=True)
