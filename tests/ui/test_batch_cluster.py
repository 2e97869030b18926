"""The Batch tab's "Run on cluster" in a real browser: a batch queued with the choice on is rendered by
a local Ray actor (not the studio's own worker), with the actor's progress and jobs/hour on the page.
"""

from __future__ import annotations

import pytest

from .conftest import ARTIFACTS, studio_page


def _choose(page, elem_id: str, value: str) -> None:
    page.click(f"#{elem_id} input")
    page.locator(f"#{elem_id} input").fill(value)
    page.locator("ul[role=listbox] li", has_text=value).first.click()


@pytest.mark.slow
def test_batch_runs_on_a_local_ray_cluster_from_the_batch_tab(studio):
    pytest.importorskip("ray", reason="the cluster choice needs Ray: pip install '.[cluster]'")
    url, _ = studio
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with studio_page(url) as page:
        page.get_by_role("tab", name="Batch").click()
        page.wait_for_selector("#batch-queue", timeout=20_000)
        _choose(page, "batch-presets", "silent_action_effects")
        page.keyboard.press("Escape")
        page.locator("#batch-seeds input").fill("2")
        page.locator("#batch-steps textarea, #batch-steps input").first.fill("2")
        page.locator("#batch-seconds textarea, #batch-seconds input").first.fill("0.5")
        page.locator("#batch-cluster input[type=checkbox]").check()
        page.locator("#batch-cluster-address textarea, #batch-cluster-address input").first.fill("local")
        page.locator("#batch-cluster-actors textarea, #batch-cluster-actors input").first.fill("1")
        page.wait_for_timeout(800)
        page.click("#batch-queue")
        page.wait_for_function("document.querySelector('#batch-cluster-status').innerText.includes('actor 1')",
                               timeout=240_000)
        page.screenshot(path=str(ARTIFACTS / "batch_cluster_running.png"), full_page=True)
        page.wait_for_function(
            "document.querySelector('#batch-cluster-status').innerText.includes('Cluster run finished')",
            timeout=400_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "batch_cluster_done.png"), full_page=True)
        status = page.inner_text("#batch-cluster-status")
        table = page.inner_text("#batch-table")
    # both jobs rendered on the farm, none by the studio's own worker, none twice
    assert "Cluster run finished: 2 done, 0 failed" in status, status
    assert "2 done, 0 failed, 0 to go" in status and "jobs/h" in status
    assert table.count("done in") == 2, table
