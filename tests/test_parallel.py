"""Ulysses sequence parallelism and the worker group, on CPU with gloo and 2 processes.

Degree 2 must give the degree-1 outputs (fp32, lengths that do not divide 2, padding inside the batch,
image-to-video time rows, speakers, the no-align pass); a worker group render must equal the in-process
render; killing a worker mid-job must fail that job quickly, restart the group, and serve the next job.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from nava_core.config import NAVAConfig, pixel_frames, valid_gpu_counts
from nava_core.ulysses import UlyssesContext, enable_ulysses
from nava_core.workers import GroupConfig, WorkerGroup, WorkerGroupError, _free_port
from nava_core.progress import CancelToken, ProgressEvent, RenderCancelled
from nava_core.request import RenderRequest

WORLD = 2


def _inputs(seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    cfg = NAVAConfig.tiny()
    ctx = [torch.randn(7, cfg.text_dim, generator=g), torch.randn(12, cfg.text_dim, generator=g)]
    video = [torch.randn(48, 3, 6, 10, generator=g), torch.randn(48, 2, 4, 6, generator=g)]  # 45 / 12 tokens
    audio = [torch.randn(13, 128, generator=g), torch.randn(9, 128, generator=g)]  # odd lengths
    spk = [torch.randn(1, 192, generator=g), torch.zeros(0, 192)]
    return [
        dict(video=video, audio=audio, t=torch.tensor([700, 700]), context=ctx),
        dict(video=video, audio=audio, t=torch.tensor([300, 300]), context=ctx, masking_modality=True),
        dict(video=video[:1], audio=audio[:1], t=torch.tensor([500]), context=ctx[:1], first_frame_is_clean=True,
             speaker_embeddings=spk[:1], speaker_positions=[[3]]),
        dict(video=None, audio=[audio[0]], t=torch.tensor([900]), context=ctx[:1]),
        dict(video=[video[0]], audio=None, t=torch.tensor([900]), context=ctx[:1]),
    ]


def _model(precision: str):
    from nava_core.model import WanAVModel
    from nava_core.weights.tiny import init_golden_weights

    cfg = NAVAConfig.tiny(precision)
    model = WanAVModel(cfg)
    model.load_state_dict(init_golden_weights(cfg, seed=0))
    return model.eval()


def _run(model, cases: list[dict]) -> list:
    with torch.no_grad():
        return [model(**c) for c in cases]


def _ulysses_rank(rank: int, world: int, port: int, precision: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    model = _model(precision)
    enable_ulysses(model, UlyssesContext(world, rank))
    torch.save(_run(model, _inputs(1)), Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _spawn_ranks(tmp_path: Path, precision: str) -> list:
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_ulysses_rank, args=(r, WORLD, port, precision, str(tmp_path))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _max_diff(a, b) -> float:
    worst = 0.0
    for (va, aa), (vb, ab) in zip(a, b):
        for xs, ys in ((va, vb), (aa, ab)):
            assert (xs is None) == (ys is None)
            for x, y in zip(xs or [], ys or []):
                assert x.shape == y.shape
                worst = max(worst, (x - y).abs().max().item())
    return worst


def test_valid_gpu_counts() -> None:
    assert valid_gpu_counts(8) == [1, 2, 3, 4, 6, 8]
    assert valid_gpu_counts(5) == [1, 2, 3, 4]
    assert valid_gpu_counts(8, num_heads=2) == [1, 2]
    assert valid_gpu_counts() == [1, 2, 3, 4, 6, 8, 12, 24]
    with pytest.raises(ValueError, match="divide"):
        enable_ulysses(_model("fp32"), UlyssesContext(3, 0))


def test_ulysses_degree_2_equals_degree_1_fp32(tmp_path) -> None:
    torch.set_num_threads(1)
    reference = _run(_model("fp32"), _inputs(1))
    ranks = _spawn_ranks(tmp_path, "fp32")
    assert _max_diff(ranks[0], ranks[1]) == 0.0  # every rank ends with the same full output
    assert _max_diff(ranks[0], reference) <= 1e-5


# ---- the worker group ------------------------------------------------------------------------------

REQ = RenderRequest(prompt="a cat says <S>hello<E> in the rain", width=160, height=96, seconds=1.0, steps=2,
                    precision="fp32", seed=11)


@pytest.mark.slow
def test_worker_group_renders_like_in_process_and_survives_a_killed_worker(tiny_weights) -> None:
    from nava_core import memory
    from nava_core.pipeline import NAVAPipeline

    torch.set_num_threads(1)
    cfg = GroupConfig(str(tiny_weights), world_size=WORLD, device="cpu", precision="fp32", memory_profile="resident",
                      collective_timeout_s=20.0, start_timeout_s=180.0)
    pipe = NAVAPipeline.from_pretrained(tiny_weights, device="cpu", precision="fp32")
    expected = pipe(memory.prepare_render(pipe, REQ))
    with WorkerGroup(cfg) as group:
        events: list[ProgressEvent] = []
        got = group.render(REQ, progress=events.append)
        assert (got.video_latents - expected.video_latents).abs().max().item() <= 1e-4
        assert (got.audio_latents - expected.audio_latents).abs().max().item() <= 1e-4
        assert got.frames.shape == expected.frames.shape
        assert abs(got.frames.astype(int) - expected.frames.astype(int)).max() <= 1
        assert [e.step for e in events if e.phase == "denoising"] == [0, 1, 2]

        # cancel from the studio: every rank stops at the same step, the group keeps serving
        token = CancelToken()

        def cancel_on_step(ev: ProgressEvent) -> None:
            if ev.phase == "denoising" and ev.step == 1:
                token.cancel()

        with pytest.raises(RenderCancelled):
            group(REQ.replace(steps=6), progress=cancel_on_step, cancel=token)
        assert group.restarts == 0

        # kill rank 1 as soon as the first denoising step is reported
        pids = group.pids()
        slow = REQ.replace(steps=6)

        def kill_on_step(ev: ProgressEvent) -> None:
            if ev.phase == "denoising" and ev.step == 1:
                os.kill(pids[1], signal.SIGKILL)

        t0 = time.monotonic()
        with pytest.raises(WorkerGroupError, match="rank 1 died"):
            group.render(slow, progress=kill_on_step)
        assert time.monotonic() - t0 < cfg.collective_timeout_s
        assert group.restarts == 1
        again = group.render(REQ)  # waits for the restarted group
        assert set(group.pids()).isdisjoint(pids)
        assert (again.audio_latents - expected.audio_latents).abs().max().item() <= 1e-4
    assert not any(p for p in group.pids())


@pytest.mark.slow
def test_hung_worker_fails_the_job_by_collective_timeout(tiny_weights) -> None:
    """A worker that stops responding (SIGSTOP: alive but silent) must not hang rank 0 forever: the
    collective times out, the job fails, the stopped worker is killed and the group restarts."""
    cfg = GroupConfig(str(tiny_weights), world_size=WORLD, device="cpu", precision="fp32", memory_profile="resident",
                      collective_timeout_s=8.0, start_timeout_s=180.0)
    with WorkerGroup(cfg) as group:
        pids = group.pids()

        def stop_on_step(ev: ProgressEvent) -> None:
            if ev.phase == "denoising" and ev.step == 1:
                os.kill(pids[1], signal.SIGSTOP)

        t0 = time.monotonic()
        with pytest.raises(WorkerGroupError, match="restarting"):
            group.render(REQ.replace(steps=6), progress=stop_on_step)
        assert time.monotonic() - t0 < cfg.collective_timeout_s + 15
        ok = group.render(REQ)
        assert ok.frames is not None and set(group.pids()).isdisjoint(pids)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[1], 0)  # the stopped worker was killed, not left behind


@pytest.mark.slow
def test_torchrun_entry_point_writes_the_render(tiny_weights, tmp_path) -> None:
    import subprocess
    import sys

    req = tmp_path / "clip.json"
    req.write_text(REQ.to_json(), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD), "-m", "nava_core.torchrun",
         "--weights", str(tiny_weights), "--out", str(tmp_path / "out"), "--precision", "fp32",
         "--memory-profile", "resident", "--timeout", "60", str(req)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from nava_core.export import probe, read_request

    mp4s = list((tmp_path / "out").glob("*.mp4"))  # written by the one output writer (render_to_files)
    assert len(mp4s) == 1 and proc.stdout.strip() == str(mp4s[0])
    mp4 = mp4s[0]
    assert mp4.with_suffix(".json").is_file() and mp4.with_suffix(".wav").is_file()
    info = probe(mp4)
    assert (info.frames, info.width, info.height, info.channels) == (pixel_frames(REQ.latent_frames), 160, 96, 2)
    assert RenderRequest.from_json(read_request(mp4)) == REQ


def test_group_refuses_impossible_gpu_requests(tiny_weights) -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only refusal; CUDA is present")
    with pytest.raises(WorkerGroupError, match="no CUDA device"):
        WorkerGroup(GroupConfig(str(tiny_weights), world_size=2, device="cuda"))
