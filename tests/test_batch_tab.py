"""The studio's Batch tab: a sweep expands to labelled jobs in the one job store, renders through the studio's
worker and engine, and compares side by side."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from app import engine as E
from app.batch_tab import build_batch_tab
from app.batches import Batches, build_definition, compare_html, parse_sweep_values
from app.paths import StudioPaths
from app.service import StudioError, StudioService
from nava_core.export import probe
from nava_core.validation import InputError

PRESET = "silent_action_effects"  # no dialogue: lint accepts a 0.5 s clip


def _tiny_choice(weights: Path) -> E.WeightChoice:
    return E.WeightChoice("tiny", str(weights), "test weights")


def test_sweep_values_parse_and_refuse() -> None:
    assert parse_sweep_values("audio", "1, 2.5") == [1.0, 2.5]
    assert parse_sweep_values("steps", "2,4") == [2, 4]
    assert parse_sweep_values("size", "portrait, 960x960") == ["704x1280", "960x960"]
    with pytest.raises(InputError, match="not a number"):
        parse_sweep_values("timbre", "1.0, loud")
    with pytest.raises(InputError, match="no values"):
        parse_sweep_values("video", " , ")
    with pytest.raises(InputError, match="swept twice"):
        build_definition([PRESET], 1, [("steps", "2"), ("steps", "3")])


def test_batch_refuses_what_the_studio_refuses() -> None:
    """`nava-render batch`'s check (lint_jobs): a dialogue preset in a clip too short for it is refused with
    the Studio's lint message, before anything is queued."""
    from nava_core.batch import BatchError, expand_batch, lint_jobs

    with pytest.raises(BatchError, match="dialogue cannot fit.*but the clip is 0.5 s"):
        lint_jobs(expand_batch(build_definition(["single_speaker_to_camera"], 1, [], seconds=0.5)))
    assert lint_jobs(expand_batch(build_definition(["single_speaker_to_camera"], 1, [], seconds=6)))  # fits: planned


@pytest.fixture
def service(tmp_path: Path, tiny_weights):
    svc = StudioService(StudioPaths.from_env(tmp_path / "home"), E.Engine(_tiny_choice(tiny_weights)))
    yield svc
    svc.close()


def test_guidance_by_seed_sweep_renders_and_compares_side_by_side(service) -> None:
    runner = Batches(service)
    # a preset without dialogue: a 0.5 s clip cannot hold spoken lines (the Studio's lint refuses that)
    defn = build_definition(["silent_action_effects"], 2, [("audio guidance", "1.0, 2.0")], first_seed=1, steps=2,
                            seconds=0.5)
    jobs = runner.plan(defn)
    assert [j.label for j in jobs] == ["audio=1.0, seed=1", "audio=1.0, seed=2", "audio=2.0, seed=1",
                                       "audio=2.0, seed=2"]
    assert [(j.request.guidance.audio, j.request.seed) for j in jobs] == [(1.0, 1), (1.0, 2), (2.0, 1), (2.0, 2)]
    assert all((j.request.width, j.request.height, j.request.steps) == (160, 96, 2) for j in jobs)
    assert "**4 jobs**" in runner.preview(defn)

    batch_id = runner.enqueue(defn)
    assert runner.enqueue(defn) == batch_id  # a double click does not queue it twice
    ids = [j.id for j in service.jobs.list(batch_id=batch_id)]
    assert len(ids) == 4
    assert all(service.worker.wait(i, 240).state == "done" for i in ids), runner.rows(batch_id)
    rows = runner.rows(batch_id)
    assert [r[1] for r in rows] == ["done"] * 4 and all(".mp4" in r[4] and ".wav" in r[4] for r in rows)

    entries = runner.compare(batch_id)
    assert [e.label for e in entries] == [j.label for j in jobs]
    assert [e.varied for e in entries] == [{"audio": "1.0", "seed": "1"}, {"audio": "1.0", "seed": "2"},
                                           {"audio": "2.0", "seed": "1"}, {"audio": "2.0", "seed": "2"}]
    for e in entries:
        info = probe(e.mp4)
        assert info.video_codec == "h264" and info.channels == 2 and (info.width, info.height) == (160, 96)
    assert len({e.mp4 for e in entries}) == 4
    grid = compare_html(entries)
    assert grid.count("<video") == 4 and "repeat(2," in grid  # two seeds side by side per guidance value
    for e in entries:
        assert f">{e.label}</figcaption>" in grid and Path(e.mp4).name in grid

    with zipfile.ZipFile(runner.zip_outputs(batch_id)) as zf:
        assert sum(n.endswith(".mp4") for n in zf.namelist()) == 4


def test_batch_jobs_pass_the_studio_lint(service) -> None:
    """The same checks as a studio render: a dialogue preset squeezed into 0.5 s is refused, nothing queued."""
    with pytest.raises(StudioError, match="cannot fit"):
        Batches(service).enqueue(build_definition(["single_speaker_to_camera"], 2, steps=2, seconds=0.5))
    assert service.jobs.list() == []


def test_batch_queue_is_bounded_in_total(service) -> None:
    """Batches are bounded like single renders: over the studio's limit of waiting batch jobs a batch is
    refused whole, with the reason, and nothing of it is queued."""
    from dataclasses import replace

    saved = service.limits
    service.limits = replace(saved, batch_jobs=3)
    try:
        Batches(service).enqueue(build_definition([PRESET], 3, steps=2, seconds=0.5))
        with pytest.raises(StudioError, match="batch queue is full"):
            Batches(service).enqueue(build_definition([PRESET], 3, steps=4, seconds=0.5))
        assert len(service.jobs.list()) == 3
    finally:
        for j in service.pending():
            service.jobs.cancel(j.id)
        service.limits = saved


def test_tab_mounts_in_a_studio_page(service) -> None:
    import gradio as gr

    with gr.Blocks() as demo:
        with gr.Tab("Batch"):
            runner = build_batch_tab(service)
    assert runner.out_root == service.paths.outputs
    assert str(runner.out_root).startswith(service.paths.allowed_paths()[0])  # the page may serve its videos
    assert all(fn.api_visibility == "private" for fn in demo.fns.values())
    with pytest.raises(InputError, match="none picked"):
        runner.enqueue(build_definition([], 1))
    assert runner.batch_choices() == []
