"""The tiled video-VAE decode of a multi-GPU render, split across the ranks instead of repeated on each.

Why: after a parallel denoise every rank holds the same latents and used to decode all of them (at
720p the decode costs about 3.6 backbone forwards, in fp32). With tiling on, the tiles are
independent: tile t is decoded by rank t mod N, the decoded tiles are broadcast, and every rank
blends them exactly as diffusers' `AutoencoderKLWan.tiled_decode` does, so the frames equal the
single-process tiled decode. Untiled decodes (and decodes that fit in one tile) are not split: they
run as before on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from nava_core.components.video_vae import TILE_LATENTS, TILE_STRIDE_LATENTS
from nava_core.config import VAE_SPATIAL_STRIDE, pixel_frames


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
    def decode(self, latents: torch.Tensor, tiled: bool = False) -> torch.Tensor:
        vae, model = self.inner, self.inner.model
        s = VAE_SPATIAL_STRIDE
        th, tw = TILE_LATENTS
        if not tiled or self.world_size == 1 or (latents.shape[-2] <= th and latents.shape[-1] <= tw):
            return vae.decode(latents, tiled=tiled)
        if latents.ndim != 4 or latents.shape[0] != model.config.z_dim:
            raise ValueError(f"latents must be [{model.config.z_dim},T,h,w], got {tuple(latents.shape)}")
        z = vae.denormalize(latents).unsqueeze(0).to(vae.device, vae.dtype)
        video = self._tiled_decode(model, z, th, tw, *TILE_STRIDE_LATENTS, s)
        video = video[0].float().clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()
        if video.shape[0] != pixel_frames(latents.shape[1]):
            raise RuntimeError(f"decoder made {video.shape[0]} frames, expected {pixel_frames(latents.shape[1])}")
        return video.cpu()

    def _tiled_decode(self, model: Any, z: torch.Tensor, th: int, tw: int, sh: int, sw: int, s: int) -> torch.Tensor:
        """diffusers' tiled_decode with tile sizes th x tw (stride sh x sw, latents) and tiles shared out."""
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        _, _, frames, height, width = z.shape
        patch = model.config.patch_size or 1
        out_h, out_w = height * s // patch, width * s // patch
        stride_h, stride_w = sh * s // patch, sw * s // patch
        blend_h, blend_w = th * s // patch - stride_h, tw * s // patch - stride_w
        starts = [(i, j) for i in range(0, height, sh) for j in range(0, width, sw)]
        decoded: dict[tuple[int, int], torch.Tensor] = {}
        for t, (i, j) in enumerate(starts):
            if t % self.world_size != self.rank:
                continue
            model.clear_cache()
            parts = []
            for k in range(frames):
                model._conv_idx = [0]
                tile = model.post_quant_conv(z[:, :, k:k + 1, i:i + th, j:j + tw])
                parts.append(model.decoder(tile, feat_cache=model._feat_map, feat_idx=model._conv_idx,
                                           first_chunk=(k == 0)))
            decoded[(i, j)] = torch.cat(parts, dim=2)
        model.clear_cache()
        for t, key in enumerate(starts):  # every rank receives every tile
            owner = t % self.world_size
            shape = torch.zeros(5, dtype=torch.int64, device=z.device)
            if owner == self.rank:
                shape.copy_(torch.tensor(decoded[key].shape, dtype=torch.int64))
            dist.broadcast(shape, src=self._global_rank(owner), group=self.group)
            tile = decoded[key].contiguous() if owner == self.rank else \
                torch.empty(tuple(shape.tolist()), dtype=z.dtype, device=z.device)
            dist.broadcast(tile, src=self._global_rank(owner), group=self.group)
            decoded[key] = tile
        rows_i = sorted({i for i, _ in starts})
        cols_j = sorted({j for _, j in starts})
        rows = [[decoded[(i, j)] for j in cols_j] for i in rows_i]
        result_rows = []
        for a, row in enumerate(rows):
            out_row = []
            for b, tile in enumerate(row):
                if a > 0:
                    tile = model.blend_v(rows[a - 1][b], tile, blend_h)
                if b > 0:
                    tile = model.blend_h(row[b - 1], tile, blend_w)
                out_row.append(tile[:, :, :, :stride_h, :stride_w])
            result_rows.append(torch.cat(out_row, dim=-1))
        dec = torch.cat(result_rows, dim=3)[:, :, :, :out_h, :out_w]
        if model.config.patch_size is not None:
            dec = unpatchify(dec, patch_size=model.config.patch_size)
        return torch.clamp(dec, min=-1.0, max=1.0)


__all__ = ["SplitTileDecode"]
