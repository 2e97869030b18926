"""The tiled video-VAE decode of a multi-GPU render, split across the ranks instead of repeated on each.

Why: after a parallel denoise every rank holds the same latents and used to decode all of them (at
720p the decode costs about 3.6 backbone forwards, in fp32). With tiling on, the tiles are
independent: tile t is decoded by rank t mod N, the decoded tiles are broadcast, and every rank
blends them with the one-process code (`video_vae.tile_spans` / `blend_tiles`, the release's Wan
tiling), so the frames equal the single-process tiled decode. Untiled decodes (and decodes that fit in one tile) are not split: they
run as before on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from nava_core.components.video_vae import TILE_LATENTS, TILE_STRIDE_LATENTS, blend_tiles, tile_spans
from nava_core.config import pixel_frames


class SplitTileDecode:
    """Wraps a `VideoVAE`; `decode(latents, tiled=True)` shares its tiles among the ranks of `group`."""

    def __init__(self, vae: Any, rank: int, world_size: int, group: Any = None) -> None:
        self.inner = vae
        self.rank = rank
        self.world_size = world_size
        self.group = group

    def __getattr__(self, name: str) -> Any:  # model, device, encode_image, ... unchanged
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _global_rank(self, group_rank: int) -> int:
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, tiled: bool = False, precision: str = "fp32",
               tile: tuple[int, int] = TILE_LATENTS, stride: tuple[int, int] = TILE_STRIDE_LATENTS) -> torch.Tensor:
        """`VideoVAE.decode` with the tiles of a tiled decode decoded once each, by rank t mod N."""
        vae = self.inner
        if latents.ndim != 4 or latents.shape[0] != vae.model.config.z_dim:
            raise ValueError(f"latents must be [{vae.model.config.z_dim},T,h,w], got {tuple(latents.shape)}")
        spans = tile_spans(latents.shape[-2], latents.shape[-1], tile, stride)
        if not tiled or self.world_size == 1 or len(spans) == 1:
            return vae.decode(latents, tiled=tiled, precision=precision, tile=tile, stride=stride)
        z = vae.denormalize(latents).unsqueeze(0)
        tiles = self._shared_tiles(z, spans, precision)
        video = blend_tiles(tiles, spans, z.shape, tile, stride)[0].permute(1, 0, 2, 3).contiguous()
        if video.shape[0] != pixel_frames(latents.shape[1]):
            raise RuntimeError(f"decoder made {video.shape[0]} frames, expected {pixel_frames(latents.shape[1])}")
        return video.cpu()

    def _shared_tiles(self, z: torch.Tensor, spans: list[tuple[int, int, int, int]], precision: str) -> list:
        """Every tile, decoded (as `VideoVAE` decodes one tile) by its owner and broadcast to all ranks."""
        vae = self.inner
        tiles: list = []
        for t, (h0, h1, w0, w1) in enumerate(spans):
            owner = t % self.world_size
            shape = torch.zeros(5, dtype=torch.int64, device=vae.device)
            decoded = None
            if owner == self.rank:
                decoded = vae._decode_denormalized(z[:, :, :, h0:h1, w0:w1], precision).contiguous()
                shape.copy_(torch.tensor(decoded.shape, dtype=torch.int64))
            dist.broadcast(shape, src=self._global_rank(owner), group=self.group)
            if decoded is None:
                decoded = torch.empty(tuple(shape.tolist()), dtype=torch.float32, device=vae.device)
            dist.broadcast(decoded, src=self._global_rank(owner), group=self.group)
            tiles.append(decoded.cpu())
        return tiles


__all__ = ["SplitTileDecode"]
