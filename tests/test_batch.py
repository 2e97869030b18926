"""Batch definitions expand up front into validated requests with labels; bad batches are refused."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

import prompt_builder
from nava_core.batch import (
    MAX_JOBS,
    BatchDefinition,
    BatchError,
    BatchItem,
    expand_batch,
)
from nava_core.jobs import JobQueue
from nava_core.request import RenderRequest

INLINE = {"prompt": "A chef says <S>Dinner is served.<E> Plates clink.", "seed": 10, "steps": 30}


def test_seed_sweep_and_guidance_grid_expand_with_labels() -> None:
    d = BatchDefinition(name="night", items=[BatchItem(request=INLINE, seeds=3, grid={"timbre": [2.0, 3.5], "steps": [20, 40]})])
    jobs = expand_batch(d)
    assert len(jobs) == 2 * 2 * 3
    assert jobs[0].label == "timbre=2.0, steps=20, seed=10"
    assert jobs[-1].varied == {"timbre": 3.5, "steps": 40, "seed": 12}
    assert {(j.request.guidance.timbre, j.request.steps, j.request.seed) for j in jobs} == {
        (t, s, seed) for t in (2.0, 3.5) for s in (20, 40) for seed in (10, 11, 12)
    }
    assert all(j.request.prompt == INLINE["prompt"] and j.request.guidance.video == 3.0 for j in jobs)


def test_size_seconds_explicit_seeds_and_overrides() -> None:
    d = BatchDefinition.from_dict({
        "name": "sizes",
        "overrides": {"steps": 12},
        "items": [{"request": INLINE, "seeds": [5, 99], "grid": {"size": ["704x1280", "960x960"], "guidance.audio": [1.0]},
                   "overrides": {"seconds": 4.0}}],
    })
    jobs = expand_batch(d)
    assert [(j.request.width, j.request.height, j.request.seed) for j in jobs] == [
        (704, 1280, 5), (704, 1280, 99), (960, 960, 5), (960, 960, 99)]
    assert all(j.request.steps == 12 and j.request.seconds == 4.0 and j.request.guidance.audio == 1.0 for j in jobs)


def test_presets_expand_through_the_prompt_builder() -> None:
    names = prompt_builder.list_presets()[:2]
    d = BatchDefinition(name="presets", items=[BatchItem(preset=n, seeds=2) for n in names])
    jobs = expand_batch(d)
    assert len(jobs) == 4
    for j in jobs:
        project = prompt_builder.load_preset(j.source)
        assert j.request.prompt == prompt_builder.compile_project(project).text
        assert j.request.mode == project.mode and j.label.startswith(f"{j.source}: seed=")


def test_json_round_trip_and_file(tmp_path: Path) -> None:
    d = BatchDefinition(name="rt", items=[BatchItem(request=INLINE, seeds=2, grid={"video": [1.0, 2.0]})])
    p = d.save(tmp_path / "b.json")
    back = BatchDefinition.load(p)
    assert back == d and [j.request for j in expand_batch(back)] == [j.request for j in expand_batch(d)]


def test_request_json_file_as_bundle(tmp_path: Path) -> None:
    (tmp_path / "req.json").write_text(RenderRequest(prompt="saved one", seed=3).to_json())
    jobs = expand_batch(BatchDefinition(name="f", items=[BatchItem(bundle=str(tmp_path / "req.json"), seeds=2)]))
    assert [j.request.seed for j in jobs] == [3, 4] and jobs[0].request.prompt == "saved one"


@pytest.mark.parametrize(
    "defn,words",
    [
        ({"name": "x", "items": [{"request": INLINE, "seedz": 2}]}, ("unknown", "seedz")),
        ({"name": "x", "itemz": []}, ("unknown", "itemz")),
        ({"name": "x", "items": []}, ("no items",)),
        ({"name": "x", "items": [{"request": INLINE, "grid": {"timbre": []}}]}, ("timbre", "empty")),
        ({"name": "x", "items": [{"request": INLINE, "grid": {"temperature": [1]}}]}, ("unknown grid key", "temperature")),
        ({"name": "x", "items": [{"request": INLINE, "seeds": 11, "grid": {"timbre": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                                                                         "steps": list(range(10, 20))}}]}, ("1,100", "1,000")),
        ({"name": "x", "items": [{"request": INLINE, "grid": {"timbre": [50.0]}}]}, ("timbre", "20")),
        ({"name": "x", "items": [{"request": INLINE, "grid": {"size": ["1000x700"]}}]}, ("multiples of 32",)),
        ({"name": "x", "items": [{"request": INLINE, "seeds": [2**32]}]}, ("seed",)),
        ({"name": "x", "items": [{"request": INLINE, "seeds": 0}]}, ("seeds",)),
        ({"name": "x", "items": [{"request": INLINE, "preset": "portrait_vlog"}]}, ("exactly one",)),
        ({"name": "x", "items": [{"preset": "no_such_preset_here"}]}, ("no_such_preset_here",)),
        ({"name": "x", "items": [{"request": {**INLINE, "stepz": 3}}]}, ("stepz",)),
        ({"name": "x", "version": 7, "items": [{"request": INLINE}]}, ("version",)),
        ([1, 2], ("json object",)),
    ],
)
def test_bad_batches_are_refused_before_anything_is_queued(defn, words, tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    with pytest.raises(BatchError) as info:
        q.enqueue_many(expand_batch(BatchDefinition.from_dict(defn)), batch_id="x")
    msg = str(info.value).lower()
    for w in words:
        assert w.lower() in msg, msg
    assert sum(q.counts().values()) == 0


def test_exactly_max_jobs_is_allowed() -> None:
    d = BatchDefinition(name="big", items=[BatchItem(request=INLINE, seeds=MAX_JOBS)])
    assert len(expand_batch(d)) == MAX_JOBS


def test_zip_bundle_with_traversal_is_refused(tmp_path: Path) -> None:
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../escape.json", "{}")
    with pytest.raises(BatchError) as info:
        expand_batch(BatchDefinition(name="z", items=[BatchItem(bundle=str(z))]), bundle_dir=tmp_path / "x")
    assert "traversal" in str(info.value)
    assert not (tmp_path / "x").exists()


def test_batch_estimate_is_the_one_estimator_summed_over_jobs() -> None:
    from nava_core.estimate import render_seconds

    base = RenderRequest(prompt="x", steps=10, width=160, height=96, seconds=1.0)
    planned = expand_batch(BatchDefinition(name="e", items=[BatchItem(request=base.to_dict(), seeds=4)]))
    assert len(planned) == 4
    one = render_seconds(base, tiny=True)
    assert sum(render_seconds(j.request, tiny=True) for j in planned) == pytest.approx(4 * one)
    assert render_seconds(base.replace(steps=20), tiny=True) > one


def test_planned_jobs_queue_with_labels(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    jobs = expand_batch(BatchDefinition(name="n", items=[BatchItem(request=INLINE, seeds=2, grid={"timbre": [2.0]})]))
    ids = q.enqueue_many(jobs, batch_id="n")
    assert [q.get(i).label for i in ids] == ["timbre=2.0, seed=10", "timbre=2.0, seed=11"]
    assert json.loads(q.get(ids[1]).request_json)["seed"] == 11
