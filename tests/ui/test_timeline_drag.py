"""The timeline in a real browser: drag the second line right and onto the other speaker's lane.

The drop must retime the line (a pause before it), reassign it to the lane's speaker, and the table
and the compiled prompt must follow. Screenshots: tests/_artifacts/timeline_before.png, timeline_after.png.
"""

from __future__ import annotations

import pytest

from .conftest import ARTIFACTS, studio_page


def _table(page) -> list[list[str]]:
    """The Lines table's body rows as text (Gradio 6 draws them as virtual rows of grid cells)."""
    return page.evaluate(TABLE_JS)


TABLE_JS = """() => [...document.querySelectorAll('#timeline-table [role=row].virtual-row')]
  .sort((a, b) => a.dataset.index - b.dataset.index)
  .map(r => [...r.querySelectorAll('[role=gridcell]')].map(c => c.innerText.trim()))"""


def _prompt(page) -> str:
    return page.evaluate("() => document.querySelector('#prompt-text textarea').value")


@pytest.mark.slow
def test_drag_line_to_retime_and_reassign(studio):
    url, _ = studio
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with studio_page(url, height=1000) as page:
        page.wait_for_function("document.querySelector('#prompt-text textarea').value.includes('<S>')", timeout=20_000)
        prompt_before = _prompt(page)
        page.get_by_role("tab", name="Voice cast & timeline").click()
        clip = page.wait_for_selector('#timeline-html .nava-clip[data-line="2"]', timeout=20_000)
        page.wait_for_function(f"({TABLE_JS})().length == 2", timeout=20_000)
        page.wait_for_timeout(500)
        before = _table(page)
        assert [r[3] for r in before[:2]] == ["A", "B"], before
        page.screenshot(path=str(ARTIFACTS / "timeline_before.png"))

        box = clip.bounding_box()
        lane_a = page.locator('#timeline-html .nava-lane[data-speaker="A"]').bounding_box()
        x, y = box["x"] + 20, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 60, y - 10, steps=5)
        page.mouse.move(x + 120, lane_a["y"] + lane_a["height"] / 2, steps=10)
        page.mouse.up()

        page.wait_for_function("document.querySelector('#timeline-status').innerText.includes('applied')", timeout=20_000)
        page.wait_for_selector('#timeline-html .nava-clip[data-line="2"][data-speaker="A"]', timeout=20_000)
        page.wait_for_function(f"({TABLE_JS})()[1][3] === 'A'", timeout=20_000)
        page.wait_for_function(f"document.querySelector('#prompt-text textarea').value !== {prompt_before!r}",
                               timeout=20_000)
        page.wait_for_timeout(500)
        after = _table(page)
        status = page.inner_text("#timeline-status")
        lanes_b = page.locator('#timeline-html .nava-lane[data-speaker="B"] .nava-clip').count()
        page.screenshot(path=str(ARTIFACTS / "timeline_after.png"))
        prompt_after = _prompt(page)

    assert [r[3] for r in after[:2]] == ["A", "A"], after  # reassigned to the lane it was dropped on
    assert after[1][4] == before[1][4]  # same line, same place in the order
    start_before, start_after = float(before[1][1]), float(after[1][1])
    assert start_after > start_before + 0.3, (before, after)  # moved right: a pause before it
    assert round(start_after * 10) == pytest.approx(start_after * 10, abs=1e-6)  # snapped to 0.1 s
    assert lanes_b == 0
    assert "line 2" in status
    assert "after a pause of about" in prompt_after and "after a pause of about" not in prompt_before
    assert prompt_after != prompt_before
