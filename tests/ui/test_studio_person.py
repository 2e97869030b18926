"""The studio driven as a person drives it, on a busy machine: a render running and a CPU hog beside it.

One studio server (tiny weights, its own data folder) serves every test in this module, in order:
typing at 120 ms/key into every builder row field (default rows, an added row, after a delete, after a
preset load) must end with the compiled prompt saying exactly what was typed; a reload during a render
restores the project and shows the finished result; a double-click on Render queues two jobs, one is
cancelled, exactly one renders; preset A then preset B leaves nothing of A; a studio-made MP4 dropped
on the page restores its request exactly; an empty hand-edited prompt is refused with the reason.
Screenshots of every tab (1440x900) and of the Studio on a phone (390x844) go to
tests/_artifacts/screenshots/. The server log of the whole module must hold no traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ARGS, CHROMIUM, ROOT, running_studio

pytestmark = pytest.mark.slow

SHOTS = ROOT / "tests" / "_artifacts" / "screenshots"
DESK = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
KEY_DELAY_MS = 120


@pytest.fixture(scope="module")
def busy_studio(tmp_path_factory):
    """The studio on a free port plus a process burning a CPU core for the whole module."""
    tmp = tmp_path_factory.mktemp("busy_studio")
    home = tmp / "home"
    log_path = tmp / "studio.log"
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with running_studio(home, log_path, start_timeout_s=90) as (url, _):
            yield url, home, log_path
    finally:
        hog.kill()
        hog.wait(10)
    text = log_path.read_text()
    assert "Traceback" not in text, text[text.index("Traceback") - 500:][:4000]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _open(browser, url: str, viewport: dict = DESK):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.wait_for_selector("#render-btn", timeout=90_000)
    page.wait_for_selector("#beat-text-0 textarea, #beat-text-0 input", timeout=60_000)
    page.wait_for_timeout(1500)  # the load events (autosave restore, first compile) settle
    return context, page


def _field(page, elem_id: str):
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def _type(page, elem_id: str, text: str) -> None:
    """Click into a field, clear it and type like a person (120 ms per key)."""
    box = _field(page, elem_id)
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    page.keyboard.type(text, delay=KEY_DELAY_MS)


def _prompt(page) -> str:
    return _field(page, "prompt-text").input_value()


def _spans(text: str) -> list[str]:
    return re.findall(r"<S>(.*?)<E>", text)


def _wait_prompt(page, predicate, timeout_s: float = 40.0) -> str:
    deadline = time.monotonic() + timeout_s
    text = _prompt(page)
    while time.monotonic() < deadline:
        text = _prompt(page)
        if predicate(text):
            page.wait_for_timeout(1200)  # and it stays that way (no late, stale compile overwrites it)
            again = _prompt(page)
            if predicate(again):
                return again
        page.wait_for_timeout(250)
    return text


def _visible_rows(page, prefix: str) -> int:
    return page.locator(f"[id^={prefix}-row-]:visible").count()


def _assert_nothing_disabled(page) -> None:
    disabled = page.evaluate("""() => [...document.querySelectorAll(
        '.nava-beat-row textarea, .nava-beat-row input, .nava-cast-row textarea, .nava-cast-row input,'
        + ' #builder textarea, #builder input')]
        .filter(e => e.disabled && e.offsetParent !== null).map(e => e.closest('[id]')?.id || e.outerHTML.slice(0, 80))""")
    assert disabled == [], f"disabled builder fields: {disabled}"


def _set_steps(page, n: int) -> None:
    box = page.locator("#steps input[type=number]")
    box.fill(str(n))
    box.press("Enter")
    page.wait_for_timeout(500)


def _load_preset(page, name: str) -> None:
    page.click("#preset input")
    page.locator("#preset input").fill(name)
    page.locator("ul[role=listbox] li", has_text=name).first.click()
    page.click("#load-preset")


def _queue_rows(page) -> list[dict]:
    return page.evaluate("""() => [...document.querySelectorAll('#nava-queue tr[data-job]')].map(r => (
        {id: r.dataset.job, state: r.dataset.state, mine: r.classList.contains('nava-mine')}))""")


def _mp4s(home: Path) -> list[Path]:
    return sorted(home.rglob("*.mp4"), key=lambda p: p.stat().st_mtime)


# ---- the tests, in the order a session goes ----------------------------------------------------


def test_typing_into_every_row_field_reaches_the_prompt(busy_studio, browser):
    url, home, _ = busy_studio
    context, page = _open(browser, url)
    try:
        _set_steps(page, 30)
        page.click("#render-btn")  # a render runs on the same two cores while the person types
        page.wait_for_selector("#render-progress [data-status=running], #render-progress [data-status=queued]",
                               timeout=60_000)
        _assert_nothing_disabled(page)
        lines = ["Did you hear that?", "I heard it, annoyed."]
        for i, line in enumerate(lines):  # the default rows
            _type(page, f"beat-text-{i}", line)
            _type(page, f"beat-emo-{i}", f"mood{i}")
        for j, name in enumerate(["Ana", "Bo"]):
            _type(page, f"cast-name-{j}", name)
            _type(page, f"cast-desc-{j}", f"voice{j}")
        page.click("#add-line")  # an added row
        page.wait_for_selector("#beat-row-2:visible", timeout=30_000)
        _type(page, "beat-text-2", "See you by Friday.")
        lines.append("See you by Friday.")
        _assert_nothing_disabled(page)
        text = _wait_prompt(page, lambda t: _spans(t) == lines)
        assert _spans(text) == lines, text
        for word in ("mood0", "mood1", "Ana", "Bo", "voice0", "voice1"):
            assert word in text, (word, text)

        page.click("#beat-rm-0")  # after a delete the rows below move up and stay editable
        page.wait_for_function("() => !document.querySelector('#beat-row-2') || "
                               "document.querySelector('#beat-row-2').offsetParent === null", timeout=30_000)
        lines = lines[1:]
        assert _field(page, "beat-text-0").input_value() == lines[0]
        _type(page, "beat-text-1", "See you on Monday.")
        lines[1] = "See you on Monday."
        _type(page, "beat-emo-0", "calm")
        _assert_nothing_disabled(page)
        text = _wait_prompt(page, lambda t: _spans(t) == lines and "calm" in t)
        assert _spans(text) == lines and "calm" in text, text

        _load_preset(page, "two_person_dialogue")  # after a preset load
        page.wait_for_function("() => document.querySelector('#preset-status')?.innerText.includes('two_person_dialogue')",
                               timeout=30_000)
        n = _visible_rows(page, "beat")
        assert n >= 2
        typed = []
        for i in range(n):
            kind = _field(page, f"beat-kind-{i}").input_value()
            _type(page, f"beat-text-{i}", f"Row {i} typed")
            if kind == "line":
                typed.append(f"Row {i} typed")
        _type(page, "cast-name-0", "Walt")
        _assert_nothing_disabled(page)
        text = _wait_prompt(page, lambda t: _spans(t) == typed and "Walt" in t)
        assert _spans(text) == typed and "Walt" in text, text
        page.screenshot(path=str(SHOTS / "typing_after_preset.png"), full_page=False)
    finally:
        context.close()


def test_reload_mid_render_restores_the_project_and_shows_the_result(busy_studio, browser):
    url, home, _ = busy_studio
    context, page = _open(browser, url)
    try:
        page.wait_for_function("() => !document.querySelector('#nava-queue tr[data-state=running], "
                               "#nava-queue tr[data-state=queued]')", timeout=400_000)  # the previous test's render
        _type(page, "title", "Reload survivor")
        _type(page, "beat-text-0", "Still here after a reload.")
        _set_steps(page, 6)
        _wait_prompt(page, lambda t: "Still here after a reload." in t)
        page.click("#render-btn")
        page.wait_for_selector("#render-progress [data-status=running]", timeout=120_000)
        page.reload(wait_until="load")
        page.wait_for_selector("#beat-text-0 textarea, #beat-text-0 input", timeout=60_000)
        page.wait_for_function("() => { const e = document.querySelector('#title textarea, #title input');"
                               " return e && e.value === 'Reload survivor'; }", timeout=30_000)
        assert _field(page, "beat-text-0").input_value() == "Still here after a reload."
        page.wait_for_selector("#render-progress [data-status=running], #render-progress [data-status=done]",
                               timeout=30_000)  # re-attached to the job
        page.wait_for_selector("#render-progress [data-status=done]", timeout=400_000)
        src = page.wait_for_selector("#result-video video", timeout=60_000).get_attribute("src")
        assert src and src.split("?")[0].endswith(".mp4")
    finally:
        context.close()


def test_double_click_render_queues_two_cancel_one_renders_one(busy_studio, browser):
    url, home, _ = busy_studio
    context, page = _open(browser, url)
    try:
        before = len(_mp4s(home))
        _set_steps(page, 3)
        page.dblclick("#render-btn")
        page.wait_for_function("() => document.querySelectorAll('#nava-queue tr.nava-mine[data-state=queued], "
                               "#nava-queue tr.nava-mine[data-state=running]').length >= 2", timeout=60_000)
        rows = [r for r in _queue_rows(page) if r["mine"] and r["state"] in ("queued", "running")]
        assert len(rows) == 2, rows
        first, last = rows[0], rows[-1]  # listed in queue order: the second click is behind the first
        page.click(f"#nava-queue tr[data-job='{last['id']}'] button")
        page.wait_for_selector(f"#nava-queue tr[data-job='{last['id']}'][data-state=cancelled]", timeout=60_000)
        page.wait_for_selector(f"#nava-queue tr[data-job='{first['id']}'][data-state=done]", timeout=400_000)
        assert len(_mp4s(home)) == before + 1
    finally:
        context.close()


def test_preset_a_then_b_leaves_no_trace_of_a(busy_studio, browser):
    import prompt_builder as pb

    url, _, _ = busy_studio
    context, page = _open(browser, url)
    try:
        _load_preset(page, "two_person_dialogue")
        page.wait_for_function("() => document.querySelector('#preset-status')?.innerText.includes('two_person_dialogue')",
                               timeout=30_000)
        _load_preset(page, "audio_only_voice")
        page.wait_for_function("() => document.querySelector('#preset-status')?.innerText.includes('audio_only_voice')",
                               timeout=30_000)
        b = pb.load_preset("audio_only_voice")
        expected = pb.compile_project(b).text
        text = _wait_prompt(page, lambda t: t == expected)
        assert text == expected
        assert _visible_rows(page, "beat") == len(b.timeline)
        assert _visible_rows(page, "cast") == len(b.cast)
        for i, beat in enumerate(b.timeline):
            assert _field(page, f"beat-text-{i}").input_value() == beat.text
        for j, member in enumerate(b.cast):
            assert _field(page, f"cast-name-{j}").input_value() == member.name
            if member.voice_file:  # the voice is shown by its own file name, with a player
                shown = "".join(page.locator(f"#cast-voice-{j}").inner_text().split())
                assert Path(member.voice_file).name in shown, shown
                assert page.locator(f"#cast-play-{j}").is_visible()
        assert page.locator("#mode input[value=audio]").is_checked()
        assert not page.locator("#camera-box").is_visible()  # mode-dependent parts follow the preset
        assert _field(page, "preset").input_value() == "audio_only_voice"
    finally:
        context.close()


def test_dropping_a_studio_mp4_restores_its_request(busy_studio, browser):
    from nava_core.export import read_request

    url, home, _ = busy_studio
    mp4 = _mp4s(home)[-1]
    original = json.loads(read_request(mp4))
    context, page = _open(browser, url)
    try:
        _load_preset(page, "two_person_dialogue")
        page.wait_for_timeout(1500)
        before = len(_mp4s(home))
        page.locator("#restore-drop input[type=file]").set_input_files(str(mp4))
        page.wait_for_function("(t) => { const e = document.querySelector('#title textarea, #title input');"
                               " return e && e.value === t; }", arg=original.get("title", ""), timeout=30_000)
        _wait_prompt(page, lambda t: t == original["prompt"])
        page.click("#render-btn")
        page.wait_for_selector("#render-progress [data-status=done]", timeout=400_000)
        deadline = time.monotonic() + 30
        while len(_mp4s(home)) == before and time.monotonic() < deadline:
            time.sleep(0.5)
        again = json.loads(read_request(_mp4s(home)[-1]))
        assert again == original
    finally:
        context.close()


def test_empty_hand_edited_prompt_is_refused_with_the_reason(busy_studio, browser):
    url, home, _ = busy_studio
    context, page = _open(browser, url)
    try:
        before = len(_mp4s(home))
        jobs_before = len(_queue_rows(page))
        _field(page, "prompt-manual").check()
        box = _field(page, "prompt-text")
        box.click()
        page.keyboard.press("Control+A")
        page.keyboard.press("Backspace")
        page.wait_for_timeout(800)
        page.click("#render-btn")
        page.wait_for_selector("#render-progress [data-status=failed]", timeout=30_000)
        message = page.locator("#render-progress").inner_text()
        assert "empty" in message.lower(), message
        page.wait_for_timeout(1500)
        assert len(_queue_rows(page)) == jobs_before and len(_mp4s(home)) == before
    finally:
        context.close()


def test_screenshots_and_render_reachable_without_scrolling(busy_studio, browser):
    url, _, _ = busy_studio
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, viewport in (("desktop", DESK), ("phone", PHONE)):
        context, page = _open(browser, url, viewport)
        try:
            box = page.locator("#render-btn").bounding_box()
            assert box and 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"], (name, box)
            page.screenshot(path=str(SHOTS / f"studio_{name}.png"))
            if name == "desktop":
                for tab in ("Voice cast & timeline", "History", "Batch", "Model"):
                    page.get_by_role("tab", name=tab).click()
                    page.wait_for_timeout(2000)
                    slug = re.sub(r"[^a-z]+", "_", tab.lower()).strip("_")
                    page.screenshot(path=str(SHOTS / f"{slug}_desktop.png"))
        finally:
            context.close()
