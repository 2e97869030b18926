"""Studio service behaviours a creator hits: bad voices, images, missing weights, restart + reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from app import builder as B
from app import engine as E
from app.paths import StudioPaths
from app.service import StudioError, StudioService


@pytest.fixture
def service(tmp_path, monkeypatch):
    monkeypatch.setenv("NAVA_STUDIO_HOME", str(tmp_path / "home"))
    paths = StudioPaths.from_env()
    svc = StudioService(paths, E.Engine(E.choose_weights("tiny", paths.weights)))
    yield svc
    svc.close()


def _speechlike(path, seconds=3.0, sr=22050):
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    sf.write(str(path), wav.astype(np.float32), sr)
    return path


def test_invalid_voice_files_are_refused_with_what_to_do(service, tmp_path):
    fake = tmp_path / "voice.wav"
    fake.write_text("this is not audio")
    with pytest.raises(StudioError, match="What to do"):
        service.add_voice(fake)
    doc = tmp_path / "notes.pdf"
    doc.write_bytes(b"%PDF-1.4")
    with pytest.raises(StudioError, match="not an audio file"):
        service.add_voice(doc)
    short = tmp_path / "short.wav"
    sf.write(str(short), np.zeros(800, dtype=np.float32), 16000)
    with pytest.raises(StudioError):
        service.add_voice(short)


def test_voice_upload_any_format_is_kept_with_duration_and_preview(service, tmp_path):
    src = _speechlike(tmp_path / "mia.flac")
    up = service.add_voice(src)
    assert up.path.startswith(str(service.paths.voices)) and up.duration_s == pytest.approx(3.0, abs=0.05)
    data, sr = sf.read(up.preview)
    assert sr == 22050 and len(data) == pytest.approx(3 * 22050, abs=50)
    assert "3.0 s" in up.note
    src.unlink()  # the studio's copy survives the upload's temp file
    preview, note = service.voice_preview(up.path)
    assert preview and "3.0 s" in note


def test_image_upload_proposes_matching_bucket(service, tmp_path):
    img = tmp_path / "tall.png"
    Image.new("RGB", (360, 640), (10, 20, 30)).save(img)
    stored, bucket = service.add_image(img)
    assert bucket == "portrait" and stored.startswith(str(service.paths.images))


def test_missing_weight_set_falls_back_to_tiny_with_banner(tmp_path):
    choice = E.choose_weights(str(tmp_path / "no-such-weights"), tmp_path / "default")
    assert choice.is_tiny and "no-such-weights" in choice.reason
    banner = E.tiny_banner(choice)
    assert "random" in banner and "Download weights" in banner and "160x96" in banner
    status = E.weight_status(tmp_path / "no-such-weights")
    assert not status.complete and status.missing


def test_tiny_engine_renders_preview_sizes(service):
    req = service.build_request(B.default_state())
    assert (req.width, req.height) == (160, 96)


def test_restart_keeps_history_and_reuse_reproduces_request(tmp_path, monkeypatch):
    monkeypatch.setenv("NAVA_STUDIO_HOME", str(tmp_path / "home"))
    paths = StudioPaths.from_env()
    svc = StudioService(paths, E.Engine(E.choose_weights("tiny", paths.weights)))
    state = B.default_state()
    state["settings"]["seed"] = 1234
    req = svc.build_request(state)
    svc.worker.stop()
    old = svc.submit(state)
    assert old.request == req  # what is stored is the request as finalised, once
    svc.cancel("")  # cancelled before it ran: History keeps it
    svc.close()

    svc2 = StudioService(paths, E.Engine(E.choose_weights("tiny", paths.weights)))
    try:
        entry = svc2.history.get(old.id)
        assert entry is not None and entry.state == "cancelled"
        restored = svc2.reuse(old.id)
        assert svc2.build_request(restored) == req
        assert json.loads(entry.request_json)["seed"] == 1234
        with pytest.raises(StudioError):
            svc2.reuse("nope")
    finally:
        svc2.close()


def test_preflight_blocks_over_long_dialogue(service):
    state = B.default_state()
    state["project"]["seconds"] = 2.0
    state["project"]["timeline"][0]["text"] = "word " * 60
    with pytest.raises(StudioError, match="cannot fit"):
        service.submit(state)
    assert service.history.list() == []  # nothing queued


@pytest.mark.slow
def test_real_engine_queue_cancel_and_restart(tmp_path, monkeypatch):
    """Tiny engine: two renders queue (position shown), cancel stops at a step, history survives restart."""
    import time

    monkeypatch.setenv("NAVA_STUDIO_HOME", str(tmp_path / "home"))
    paths = StudioPaths.from_env()
    svc = StudioService(paths, E.Engine(E.choose_weights("tiny", paths.weights)))
    state = B.default_state()
    state["settings"]["steps"] = 40
    quick = B.default_state()
    quick["settings"].update(steps=2, seed=7)
    try:
        first = svc.submit(state, owner="me")
        second = svc.submit(quick, owner="other")
        assert "1 render ahead" in svc.view(second.id).html
        deadline = time.time() + 300

        def event():
            return svc.worker.event if svc.worker.current == first.id else None

        while not (event() and event().phase == "denoising" and event().step >= 1):
            assert time.time() < deadline and svc.jobs.get(first.id).state in ("queued", "running")
            time.sleep(0.05)
        assert "step" in svc.view(first.id).html
        svc.cancel("me")
        assert svc.worker.wait(first.id, 120).state == "cancelled"
        assert svc.worker.wait(second.id, 300).state == "done"
        done = svc.jobs.get(second.id)
        assert Path(done.outputs["mp4"]).exists() and Path(done.outputs["thumbnail"]).exists()
    finally:
        svc.close()
    svc2 = StudioService(paths, E.Engine(E.choose_weights("tiny", paths.weights)))
    try:
        statuses = {e.id: e.state for e in svc2.history.list()}
        assert statuses == {first.id: "cancelled", second.id: "done"}
        assert svc2.build_request(svc2.reuse(second.id)) == second.request
    finally:
        svc2.close()


def test_per_client_limit_counts_the_servers_client_id_not_the_pages(tmp_path, monkeypatch):
    """The Studio tab records its jobs as 'CLIENT#BROWSER': a new page id (another tab, cleared storage)
    does not buy more queue room; another client still gets its own."""
    from nava_core.request import MAX_STEPS

    from app.service import QueueFull, QueueLimits

    monkeypatch.setenv("NAVA_STUDIO_HOME", str(tmp_path / "home"))
    paths = StudioPaths.from_env()
    svc = StudioService(paths, E.Engine(E.choose_weights("tiny", paths.weights)), limits=QueueLimits(per_client=2))
    state = B.default_state()
    state["settings"]["steps"] = MAX_STEPS  # long enough that none finishes while the test submits
    try:
        svc.submit(state, owner="session:a#page-1")
        svc.submit(state, owner="session:a#page-2")
        with pytest.raises(QueueFull, match="full for you"):
            svc.submit(state, owner="session:a#page-3")
        assert svc.submit(state, owner="session:b#page-1").owner == "session:b#page-1"
    finally:
        for job in svc.pending():
            svc.worker.cancel(job.id)
        svc.close()
