"""Rewrite in the browser: Model tab -> local OpenAI-compatible server; Rewrite -> diff -> Accept -> Render;
the render request carries the rewritten prompt and the same voice on each line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chat_server import ChatServer, ServerState, expand

from .conftest import ARTIFACTS, studio_page


@pytest.mark.slow
def test_rewrite_diff_accept_render(studio, tmp_path: Path) -> None:
    import prompt_builder as pb
    from nava_core.export import read_request
    from nava_core.request import RenderRequest

    url, _ = studio
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with ChatServer(ServerState(delay_s=0.5)) as server, studio_page(url) as page:
        # choose the rewriter on the Model tab (this page only)
        page.get_by_role("tab", name="Model").click()
        page.get_by_text("Prompt rewriting (LLM)").click()
        page.locator("#rewrite-endpoint textarea, #rewrite-endpoint input").first.fill(server.url)
        page.locator("#rewrite-model textarea, #rewrite-model input").first.fill("writer")
        page.get_by_role("tab", name="Studio").click()

        # a two-speaker preset with a reference voice per speaker
        page.locator("#preset input").click()
        page.get_by_role("option", name="two_person_dialogue", exact=True).click()
        page.click("#load-preset")
        page.wait_for_function("document.querySelector('#prompt-text textarea').value.includes('<S>')", timeout=20_000)
        page.wait_for_timeout(1500)
        page.locator("#steps input[type=number]").fill("1")
        page.locator("#steps input[type=number]").press("Enter")
        page.wait_for_timeout(1000)
        original = page.locator("#prompt-text textarea").input_value()

        page.get_by_text("Rewrite with an LLM").click()
        # a free-text idea: rewritten, shown as a diff, rejected -> the prompt stays as it was
        idea = "a rainy street at night, no dialogue"
        page.locator("#rewrite-idea textarea").fill(idea)
        page.click("#rewrite-idea-btn")
        page.wait_for_selector("#rewrite-status [data-status=done]", timeout=60_000)
        assert idea in page.locator("#rewrite-diff").inner_text()
        assert "no music" in page.locator("#rewrite-diff ins.nava-ins").last.inner_text()
        page.click("#rewrite-reject")
        page.wait_for_selector("#rewrite-status [data-status=idle]", timeout=20_000)
        assert page.locator("#rewrite-accept").is_hidden()
        assert page.locator("#prompt-text textarea").input_value() == original

        page.click("#rewrite-btn")
        page.wait_for_selector("#rewrite-status [data-status=running]", timeout=20_000)  # progress while it runs
        page.wait_for_selector("#rewrite-status [data-status=done]", timeout=60_000)
        diff = page.locator("#rewrite-diff")
        assert diff.locator("ins.nava-ins").count() >= 1
        assert diff.locator(".nava-span").count() == original.count("<S>")  # every line shown, unchanged
        assert page.locator("#prompt-text textarea").input_value() == original  # nothing applied before Accept
        page.screenshot(path=str(ARTIFACTS / "rewrite_diff.png"), full_page=True)

        page.click("#rewrite-accept")
        rewritten = expand(original)
        page.wait_for_function(
            "t => document.querySelector('#prompt-text textarea').value === t", arg=rewritten, timeout=20_000)
        page.wait_for_timeout(1000)  # the builder recompiles with the hand-edited prompt

        page.click("#render-btn")
        page.wait_for_selector("#render-progress [data-status=done]", timeout=540_000)
        page.screenshot(path=str(ARTIFACTS / "rewrite_rendered.png"), full_page=True)

    (mp4,) = list((tmp_path / "home").rglob("*.mp4"))
    req = RenderRequest.from_json(read_request(mp4))
    assert req.prompt == rewritten
    voices = pb.compile_project(pb.Project.from_dict(req.project)).voices  # the cast's voice for each line
    assert len(req.speaker_wavs) == len(voices) == 2 and all(req.speaker_wavs)
    assert [Path(w).name for w in req.speaker_wavs] == [Path(v).name for v in voices]
    assert server.state.chat_requests == 2
