"""The tiled video-VAE decode of a parallel render shared among ranks (gloo, 2 processes) equals the
single-process tiled decode; untiled decodes are left alone."""

from __future__ import annotations

import multiprocessing as mp
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from nava_core.workers import _free_port

LATENT = (48, 2, 30, 48)  # 480x768 pixels: 2 x 2 tiles of 22x40 latents at stride 14x26


def _vae():
    from diffusers import AutoencoderKLWan

    from nava_core.components.video_vae import VideoVAE, WanVAEConfig

    torch.manual_seed(0)
    return VideoVAE(AutoencoderKLWan(**WanVAEConfig(8, 8, 48).diffusers_kwargs()), device="cpu")


def _latents() -> torch.Tensor:
    return torch.randn(*LATENT, generator=torch.Generator().manual_seed(1))


def _rank(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from nava_core.vae_split import SplitTileDecode

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    vae = SplitTileDecode(_vae(), rank, world)
    torch.save(vae.decode(_latents(), tiled=True), Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_split_tiled_decode_equals_one_process(tmp_path) -> None:
    torch.set_num_threads(1)
    want = _vae().decode(_latents(), tiled=True)
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        assert got.shape == want.shape and torch.equal(got, want)


def test_untiled_or_single_rank_decode_is_delegated() -> None:
    from nava_core.vae_split import SplitTileDecode

    vae = _vae()
    small = torch.randn(48, 1, 4, 6, generator=torch.Generator().manual_seed(2))
    split = SplitTileDecode(vae, rank=0, world_size=2)  # no process group needed: nothing is split
    assert torch.equal(split.decode(small, tiled=True), vae.decode(small, tiled=True))
    assert torch.equal(split.decode(small), vae.decode(small))
    assert split.model is vae.model
