"""The speed-up choice in the studio: every option that changes the output shows its measured drift next to
it, and a render made with one records it in the request written next to the file (re-render reproduces it)."""

from __future__ import annotations

import json

import pytest

from .conftest import ARTIFACTS, studio_page


@pytest.mark.slow
def test_speedup_choice_shows_drift_and_is_recorded(studio, tmp_path):
    url, _ = studio
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with studio_page(url) as page:
        page.click("#speedup input")
        options = page.locator("ul[role=listbox] li").all_inner_texts()
        options = [o.replace("✓", "").strip() for o in options]  # the selected one carries a check mark
        assert options[0].startswith("exact")
        changing = [o for o in options[1:]]
        assert len(changing) == 5 and all("drift" in o and "vs exact" in o for o in changing), options
        page.locator("ul[role=listbox] li", has_text="step cache, light").first.click()
        page.wait_for_timeout(500)
        assert "step cache, light" in page.locator("#speedup input").input_value()
        page.locator("#steps input[type=number]").fill("3")
        page.locator("#steps input[type=number]").press("Enter")
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "studio_speedup.png"), full_page=True)
        page.click("#render-btn")
        page.wait_for_selector("#render-progress [data-status=done]", timeout=540_000)
    sidecars = [p for p in (tmp_path / "home").rglob("*.json") if p.stat().st_size and '"prompt"' in p.read_text()]
    requests = [json.loads(p.read_text()) for p in sidecars]
    requests = [r.get("request", r) for r in requests]
    assert any(r.get("speedup") == "step_cache_light" and r.get("steps") == 3 for r in requests), sidecars
