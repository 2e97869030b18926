"""The studio in a real browser: fresh start with tiny weights, a preset rendered from a click.

Screenshots of the builder, the progress and the result go to tests/_artifacts/.
"""

from __future__ import annotations

import io

import pytest

from .conftest import ARTIFACTS, studio_page

@pytest.mark.slow
def test_render_preset_from_a_click(studio):
    import av

    url, startup_s = studio
    assert startup_s < 20, f"the studio took {startup_s:.1f} s to serve"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with studio_page(url) as page:
        assert "random" in page.locator("#nava-banner").inner_text()
        page.click("#load-preset")
        page.wait_for_timeout(1500)
        # few steps so the CPU render finishes in a test's time (the preset's dialogue needs its 6 s)
        page.locator("#steps input[type=number]").fill("2")
        page.locator("#steps input[type=number]").press("Enter")
        page.wait_for_function("document.querySelector('#duration-note').innerText.includes('145 frames')", timeout=20_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "studio_builder.png"), full_page=True)

        page.click("#render-btn")
        page.wait_for_selector("#render-progress [data-status=running]", timeout=120_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "studio_progress.png"), full_page=True)

        page.wait_for_selector("#render-progress [data-status=done]", timeout=540_000)
        video = page.wait_for_selector("#result-video video", timeout=30_000)
        src = video.get_attribute("src")
        assert src
        page.wait_for_function("document.querySelector('#result-video video').readyState >= 2", timeout=30_000)
        info = page.evaluate(
            """async () => { const v = document.querySelector('#result-video video');
                v.muted = true; await v.play(); await new Promise(r => setTimeout(r, 800)); v.pause();
                return {duration: v.duration, w: v.videoWidth, h: v.videoHeight, t: v.currentTime,
                        audioBytes: v.webkitAudioDecodedByteCount, can: v.canPlayType('video/mp4; codecs="avc1.42E01E, mp4a.40.2"')}; }""")
        page.screenshot(path=str(ARTIFACTS / "studio_result.png"), full_page=True)
        body = page.request.get(src).body()
        page.get_by_role("tab", name="History").click()
        page.wait_for_selector("text=All renders", timeout=20_000)
        page.wait_for_timeout(1500)
        history_text = page.inner_text("body")
        page.screenshot(path=str(ARTIFACTS / "studio_history.png"), full_page=True)
        page.get_by_role("tab", name="Batch").click()
        page.wait_for_selector("#batch-queue", timeout=20_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "studio_batch.png"), full_page=True)
        page.get_by_role("tab", name="Model").click()
        page.wait_for_selector("#memory-profile", timeout=20_000)
        page.wait_for_timeout(1000)
        model_text = page.inner_text("body")
        page.screenshot(path=str(ARTIFACTS / "studio_model.png"), full_page=True)
    assert "done" in history_text  # the render is listed in the History tab
    assert "group_offload" in model_text and "GB" in model_text  # real profile names, computed download size

    assert info["duration"] > 0.5 and (info["w"], info["h"]) == (160, 96) and info["t"] > 0
    assert info["audioBytes"] > 0, info  # the browser decoded an audio track
    with av.open(io.BytesIO(body)) as container:
        assert container.streams.video and container.streams.audio
        assert container.streams.audio[0].codec_context.channels == 2


def _choose(page, elem_id: str, value: str) -> None:
    """Pick a value in a Gradio dropdown the way a person does: open it, click the option."""
    page.click(f"#{elem_id} input")
    page.locator(f"#{elem_id} input").fill(value)
    page.locator("ul[role=listbox] li", has_text=value).first.click()


@pytest.mark.slow
def test_audio_only_preset_renders_playable_audio(studio):
    """Issue 9 done-when: the audio-only preset renders from a click to a playable <audio> and its picture."""
    url, _ = studio
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with studio_page(url) as page:
        _choose(page, "preset", "audio_only_voice")
        page.click("#load-preset")
        page.wait_for_function("document.querySelector('#prompt-text textarea').value.length > 20", timeout=20_000)
        page.wait_for_timeout(1500)
        assert page.locator("#mode input[value=audio]").is_checked()
        page.locator("#steps input[type=number]").fill("2")
        page.locator("#steps input[type=number]").press("Enter")
        page.wait_for_timeout(1000)
        page.click("#render-btn")
        page.wait_for_selector("#render-progress [data-status=done]", timeout=540_000)
        page.wait_for_selector("#result-audio audio", state="attached", timeout=30_000)
        try:
            page.wait_for_function("(document.querySelector('#result-audio audio') || {}).src", timeout=30_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "studio_audio_result.png"), full_page=True)
            raise AssertionError(page.evaluate("[...document.querySelectorAll('#result-audio audio')].map(a => a.outerHTML.slice(0, 400) + ' src=' + a.currentSrc).join(' || ')")) from None
        src = page.get_attribute("#result-audio audio", "src")
        info = page.evaluate(
            """async () => { const a = document.querySelector('#result-audio audio');
                if (a.readyState < 1) await new Promise(r => { a.onloadedmetadata = r; setTimeout(r, 10000); });
                return {duration: a.duration, ready: a.readyState, error: a.error && a.error.code,
                        can: a.canPlayType('audio/wav')}; }""")
        picture = page.wait_for_selector("#result-picture img", timeout=30_000)
        assert picture.get_attribute("src")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "studio_audio_result.png"), full_page=True)
        body = page.request.get(src).body()
    assert info["error"] is None and info["ready"] >= 1 and info["duration"] > 0.5, info
    assert info["can"] in ("maybe", "probably")
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"  # a real WAV file, served to the page
