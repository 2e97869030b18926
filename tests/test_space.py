"""The Hugging Face Space: ZeroGPU durations, the `spaces.GPU` wrapper, and the studio using it.

A stand-in `spaces` module (inserted in sys.modules) records every `spaces.GPU(duration=...)` call
and the function it decorates, so the tests see exactly what a ZeroGPU Space would be asked for.
"""

from __future__ import annotations

import pickle
import sys
import threading
import types
from pathlib import Path

import pytest

from app import zerogpu
from nava_core.request import RenderRequest


class GPURecorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def GPU(self, task=None, *, duration=None, size=None):  # same call forms as spaces.GPU
        def decorate(fn):
            record = {"fn": fn, "duration": duration, "size": size, "calls": 0}
            self.calls.append(record)

            def gpu_fn(*args, **kwargs):
                record["calls"] += 1
                record["asked"] = duration(*args, **kwargs) if callable(duration) else duration
                return fn(*args, **kwargs)

            gpu_fn.__wrapped__ = fn
            record["wrapper"] = gpu_fn
            return gpu_fn

        return decorate(task) if callable(task) else decorate


@pytest.fixture
def fake_spaces(monkeypatch):
    rec = GPURecorder()
    module = types.ModuleType("spaces")
    module.GPU = rec.GPU
    monkeypatch.setitem(sys.modules, "spaces", module)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    return rec


def _render(request: RenderRequest, out_dir: str, progress=None, cancel=None) -> str:
    return f"{request.steps}:{out_dir}:{progress is None}:{cancel is None}"


def _req(**kw) -> RenderRequest:
    return RenderRequest(prompt="A woman says <S>hello<E> by the sea.", **kw)


def test_wrapper_asks_for_a_duration_that_grows_with_steps_and_clip_length(fake_spaces):
    wrapped = zerogpu.wrap_for_zerogpu(_render, zerogpu.gpu_duration)
    assert len(fake_spaces.calls) == 1 and fake_spaces.calls[0]["fn"] is _render
    duration = fake_spaces.calls[0]["duration"]
    assert callable(duration), "the duration must be computed per request, not fixed at decoration"

    asked = {}
    for seconds in (2.0, 4.0):
        for steps in (8, 30):
            out = wrapped(_req(seconds=seconds, steps=steps), "/tmp/out")
            assert out == f"{steps}:/tmp/out:True:True"  # the function itself ran, arguments untouched
            asked[seconds, steps] = fake_spaces.calls[0]["asked"]
    assert all(isinstance(v, int) and v > 0 for v in asked.values()), asked
    assert asked[2.0, 30] > asked[2.0, 8] and asked[4.0, 30] > asked[4.0, 8], asked  # more steps
    assert asked[4.0, 8] > asked[2.0, 8] and asked[4.0, 30] > asked[2.0, 30], asked  # longer clip
    assert max(asked.values()) <= zerogpu.MAX_DURATION_S
    # the same numbers as gpu_duration on the request, and capped for the longest render there is
    assert asked[4.0, 30] == zerogpu.gpu_duration(_req(seconds=4.0, steps=30))
    assert zerogpu.gpu_duration(_req(seconds=20.0, steps=200)) == zerogpu.MAX_DURATION_S


def test_duration_is_found_on_a_job_object_and_falls_back_without_a_request(fake_spaces):
    job = types.SimpleNamespace(request=_req(seconds=2.0, steps=20))
    wrapped = zerogpu.wrap_for_zerogpu(lambda job, progress: "ok", lambda r: r.steps * 3)
    assert wrapped(job, progress=None) == "ok"
    assert fake_spaces.calls[0]["asked"] == 60
    plain = zerogpu.wrap_for_zerogpu(lambda x: x)
    assert plain(5) == 5 and fake_spaces.calls[1]["asked"] == zerogpu.MAX_DURATION_S


def test_duration_comes_from_the_one_estimator_and_grows_with_steps_duration_and_branches():
    from nava_core.config import GuidanceScales
    from nava_core.estimate import estimate

    r = _req(seconds=2.0, steps=10)
    base = zerogpu.estimated_render_seconds(r)
    assert base == estimate(r, gpus=1).total_seconds > 0
    assert zerogpu.estimated_render_seconds(_req(seconds=2.0, steps=20)) == pytest.approx(2 * base)
    assert zerogpu.estimated_render_seconds(_req(seconds=4.0, steps=10)) > base
    fewer = GuidanceScales(video=0.0, audio=0.0, video_align=0.0, audio_align=0.0, timbre=0.0)
    assert zerogpu.estimated_render_seconds(_req(seconds=2.0, steps=10, guidance=fewer)) < base


def test_without_spaces_the_function_is_returned_unchanged(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert zerogpu.wrap_for_zerogpu(_render, zerogpu.gpu_duration) is _render


def test_real_spaces_off_a_space_returns_the_function(monkeypatch):
    pytest.importorskip("spaces")  # a dev dependency; off a Space spaces.GPU is the identity
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    assert zerogpu.wrap_for_zerogpu(_render, zerogpu.gpu_duration) is _render


def test_on_zerogpu_unpicklable_progress_and_cancel_are_dropped(fake_spaces, monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    wrapped = zerogpu.wrap_for_zerogpu(_render, zerogpu.gpu_duration)
    lock_holder = threading.Lock()  # like CancelToken / a progress lambda: cannot be pickled
    with pytest.raises(Exception):
        pickle.dumps(lock_holder)
    out = wrapped(_req(steps=4), "/tmp/o", progress=lambda ev: None, cancel=lock_holder)
    assert out == "4:/tmp/o:True:True"
    assert fake_spaces.calls[0]["calls"] == 1 and fake_spaces.calls[0]["asked"] > 0
    # picklable keyword arguments pass through untouched
    assert wrapped(_req(steps=4), "/tmp/o", progress="p", cancel=None) == "4:/tmp/o:False:True"


def test_studio_render_function_is_wrapped_for_zerogpu(fake_spaces, tmp_path):
    from app.cli import build_parser, create_app

    args = build_parser().parse_args(["--weights", "tiny", "--port", "0", "--home", str(tmp_path / "home")])
    demo, service = create_app(args)
    try:
        names = [getattr(c["fn"], "__qualname__", "") for c in fake_spaces.calls]
        assert "Engine.render" in names, f"spaces.GPU decorated {names}, not the studio's render"
        record = next(c for c in fake_spaces.calls if getattr(c["fn"], "__qualname__", "") == "Engine.render")
        assert callable(record["duration"])
        assert service.engine.render is record["wrapper"], "the studio must call the wrapped render"
    finally:
        service.close()
        demo.close()
