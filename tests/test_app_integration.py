"""Studio integration with the engine: one GPU lock shared with the Batch tab, restart resumes renders,
weights chosen from the Hub cache, Model tab lists the engine's real profiles/GPU counts, bundles."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app import builder as B
from app import engine as E
from app.cli import build_parser
from app.paths import StudioPaths
from app.service import StudioError, StudioService

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def service(tmp_path):
    svc = StudioService(StudioPaths.from_env(tmp_path / "home"), E.Engine(E.choose_weights("tiny", tmp_path)))
    yield svc
    svc.close()


def test_one_gpu_lock_taken_in_one_place(service, tmp_path):
    """The engine's lock is the only GPU lock: the worker renders every job through Engine.render, which
    holds it; switching weights is refused while anything holds it, and the new engine keeps it."""
    assert service.gpu_lock is service.engine.gpu_lock
    held, release = threading.Event(), threading.Event()

    def hold():
        with service.gpu_lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        with pytest.raises(StudioError, match="using the GPU"):
            service.switch_weights("tiny")
    finally:
        release.set()
        t.join()
    old_lock = service.gpu_lock
    service.switch_weights("tiny", "fp8", gpus=1)
    assert service.engine.gpu_lock is old_lock and service.engine.memory_profile == "fp8"


def test_switch_weights_refused_while_batch_jobs_wait(service):
    from app.batches import Batches, build_definition

    service.worker.stop()  # no worker: the jobs stay queued
    batches = Batches(service)
    batches.enqueue(build_definition(["silent_action_effects"], 1, steps=2, seconds=0.5))
    with pytest.raises(StudioError, match="Batch jobs"):
        service.switch_weights("tiny")
    batches.cancel_batch(batches.batch_choices()[0])
    service.switch_weights("tiny")  # allowed once the batch is cancelled


def test_restart_resumes_a_queued_render_and_history_follows(tmp_path):
    """A render queued when the studio stopped is queued (not 'interrupted') after the restart, then runs."""
    paths = StudioPaths.from_env(tmp_path / "home")
    svc = StudioService(paths, E.Engine(E.choose_weights("tiny", paths.weights)))
    svc.worker.stop()  # a studio whose worker is gone: the next submit stays queued in the store
    state = B.default_state()
    state["settings"]["steps"] = 2
    job = svc.submit(state, owner="me")
    assert svc.history.get(job.id).state == "queued"
    svc.close()

    ran = []

    class Recording(E.Engine):  # the same service, with an engine that records instead of rendering
        def render(self, request, out_dir, progress=None, cancel=None):
            from nava_core.outputs import RenderOutputs

            ran.append(request)
            (out_dir / "clip.mp4").write_bytes(b"x")
            (out_dir / "clip.json").write_text(request.to_json())
            return RenderOutputs(request=request, wav=out_dir / "clip.mp4", sidecar=out_dir / "clip.json",
                                 mp4=out_dir / "clip.mp4")

    svc2 = StudioService(paths, Recording(E.choose_weights("tiny", paths.weights)))
    try:
        assert svc2.worker.wait(job.id, 20).state == "done" and ran == [job.request]
        entry = svc2.history.get(job.id)
        assert entry.state == "done" and Path(entry.outputs["mp4"]).read_bytes() == b"x"
        assert svc2.reuse(job.id)["settings"]["steps"] == 2
    finally:
        svc2.close()


def test_model_tab_profiles_and_gpu_counts_match_the_engine():
    from nava_core import profiles
    from nava_core.config import valid_gpu_counts

    assert E.MEMORY_PROFILES == profiles.CHOICES and E.MEMORY_PROFILES[0] == "auto"
    for alias in E.PROFILE_ALIASES:
        assert E.canonical_profile(alias) == profiles.ALIASES[alias]
    with pytest.raises(profiles.MemoryProfileError, match="choose one of auto, resident"):
        E.canonical_profile("turbo")  # refused, never silently "auto"
    for n in (1, 2, 3, 5, 8):
        assert E.valid_gpu_counts(n) == valid_gpu_counts(n)
    assert E.valid_gpu_counts(5) == [1, 2, 3, 4]


def test_estimate_is_labelled_and_grows_with_steps():
    short = B.request_from_state(B.default_state())
    text = E.memory_estimate(short.replace(steps=10), profile="fp8", gpus=1)
    longer = E.memory_estimate(short.replace(steps=50), profile="fp8", gpus=1)
    assert text.startswith("**Estimate**") and "GB per GPU" in text and "s/step" in text and "in total" in text

    def seconds(t: str) -> float:
        value, unit = t.split("~")[3].split(" in total")[0].replace(" of denoising", "").split()
        return float(value) * (60 if unit == "min" else 3600 if unit == "h" else 1)

    assert seconds(longer) > seconds(text) > 0


def test_download_size_is_computed_from_the_release_layout():
    from nava_core.weights.layouts import RELEASE_LAYOUT

    total = sum(f.approx_bytes for f in RELEASE_LAYOUT.files) / 1e9
    text = E.download_size_text()
    assert f"about {total:.0f} GB" in text and 35 < total < 45 and "fp8" in text


def _release_like(folder: Path, skip: tuple[str, ...] = ()) -> Path:
    from nava_core.weights.layouts import RELEASE_LAYOUT

    for f in RELEASE_LAYOUT.files:
        if f.component in skip:
            continue
        p = folder / f.path
        if f.is_dir:
            p.mkdir(parents=True, exist_ok=True)
            (p / "spiece.model").write_bytes(b"x")
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            header = b'{"__metadata__": {}}'  # a valid (empty) safetensors header: inspect_weights reads it
            p.write_bytes(len(header).to_bytes(8, "little") + header if p.suffix == ".safetensors" else b"x")
    return folder


def test_weights_from_the_hub_snapshot_when_the_user_folder_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached ReDimNet checkpoint
    snap = _release_like(tmp_path / "snap", skip=("speaker_encoder",))
    assert E.weight_status(snap).missing_components == ("speaker_encoder",), E.weight_status(snap).summary
    choice = E.choose_weights(None, tmp_path / "mine", hub_lookup=lambda: snap)
    assert choice.is_tiny and choice.needs_speaker_encoder and choice.suggested == str(snap)
    assert "speaker encoder" in choice.reason and "Download speaker encoder" in choice.reason
    from app.model_tab import folder_report

    text, _rows, button = folder_report(str(snap))
    assert "Download speaker encoder" in text and button["visible"] is True
    # a given --weights never looks at the Hub cache
    assert E.choose_weights(str(tmp_path / "mine"), tmp_path, hub_lookup=lambda: snap).suggested == ""
    assert E.choose_weights(None, tmp_path / "mine", hub_lookup=lambda: None).reason.startswith("no complete")
    # once the checkpoint is in the torch.hub cache, the snapshot is complete and used as the release weights
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "M-vb2+vox2+cnc-ft_mix.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    full = E.choose_weights(None, tmp_path / "mine", hub_lookup=lambda: snap)
    assert not full.is_tiny and full.folder == str(snap) and "Hugging Face cache" in full.reason


def test_host_and_port_follow_the_space_variables(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    args = build_parser().parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7861)
    monkeypatch.delenv("GRADIO_SERVER_NAME")
    monkeypatch.delenv("GRADIO_SERVER_PORT")
    args = build_parser().parse_args(["--memory-profile", "group_offload"])
    assert args.host == "127.0.0.1" and args.memory_profile == "group_offload"


def test_project_bundle_round_trip_keeps_voices_and_refuses_bad_archives(service, tmp_path):
    wav = tmp_path / "mia.wav"
    t = np.arange(3 * 16000) / 16000
    sf.write(str(wav), (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    up = service.add_voice(wav)
    state = B.default_state()
    state["project"]["cast"][0]["voice_file"] = up.path
    path = service.export_bundle(state)
    assert path.endswith(".nava.zip") and Path(path).is_file()
    with zipfile.ZipFile(path) as zf:
        assert "project.json" in zf.namelist() and any(n.startswith("voices/") for n in zf.namelist())
    restored = service.import_bundle(path)
    voice = restored["project"]["cast"][0]["voice_file"]
    assert Path(voice).is_file() and Path(voice).read_bytes() == Path(up.path).read_bytes()
    assert str(service.paths.uploads) in voice  # extracted where the page may serve it
    assert B.compile_state(restored).text == B.compile_state(state).text

    evil = tmp_path / "evil.nava.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.json", "{}")
    with pytest.raises(StudioError, match="path traversal"):
        service.import_bundle(evil)
    fake = tmp_path / "fake.nava.zip"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    with pytest.raises(StudioError, match="not a ZIP"):
        service.import_bundle(fake)


def test_startup_imports_no_torch(tmp_path):
    """Issue 6: the page is built without importing torch, diffusers or transformers (they load on first render)."""
    code = ("import sys, json; from app.cli import build_parser, create_app; "
            f"a = build_parser().parse_args(['--weights', 'tiny', '--home', {str(tmp_path / 'h')!r}]); "
            "d, s = create_app(a); s.close(); "
            "print(json.dumps([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_requests_record_the_profile_and_gpu_count_in_use(tmp_path):
    engine = E.Engine(E.choose_weights("tiny", tmp_path), memory_profile="low", gpus=2)
    svc = StudioService(StudioPaths.from_env(tmp_path / "home"), engine)
    try:
        req = svc.build_request(B.default_state())
    finally:
        svc.close()
    assert (req.memory_profile, req.gpus) == ("fp8", 2)


@pytest.mark.slow
def test_gpus_above_one_render_through_the_worker_group(tmp_path):
    from nava_core.export import probe
    from nava_core.request import RenderRequest

    engine = E.Engine(E.choose_weights("tiny", tmp_path), gpus=2)
    try:
        req = RenderRequest(prompt="Waves on a beach, gulls overhead.", width=160, height=96, seconds=0.5, steps=2,
                            gpus=2)
        files = engine.render(engine.finalize(req), tmp_path / "out")
        assert type(engine.pipeline()).__name__ == "WorkerGroup"
        assert probe(files.mp4).frames == 13
    finally:
        engine.unload()


def test_loading_a_preset_copies_its_voices_and_image_into_the_data_folder(service):
    from app import handlers as H

    state = service.adopt_media(H.load_preset_state("cafe_first_frame"))
    project = state["project"]
    files = [m["voice_file"] for m in project["cast"]] + [project["image"]]
    home = service.paths.home.resolve()
    assert len(files) == 3
    for f in files:
        p = Path(f)
        assert p.is_file() and home in p.resolve().parents
    preview, note = service.voice_preview(files[0])
    assert preview and home in Path(preview).resolve().parents and note.startswith("Voice:")
