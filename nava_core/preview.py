"""Live preview while denoising: a cheap look at the clip the sampler is converging to.

Every few steps the pipeline turns its current clean estimate (x0 = x_t - sigma * v, the quantity the
flow-UniPC solver itself works with) into a `Preview` and hands it to the one progress callback as
`ProgressEvent.preview`. Decoding x0 with the real video VAE every few steps would cost as much as
several denoising steps, so the video part is a linear latent->RGB projection at latent resolution
(1/16 of the frame size), fitted once per pipeline from the VAE decoder's own response to random
latents. The audio part is the loudness envelope (one value per audio token), again a linear map of the
latent fitted once from the audio VAE decoder's log-mel output. Together that costs far less than one
step; the fits cost one small decode each, once per pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_PREVIEW_EVERY = 5  # steps between previews: 10 previews in a 50-step render
MAX_PREVIEW_FRAMES = 8  # frames kept in a preview strip


@dataclass(frozen=True)
class Preview:
    """What the page draws during a render; small enough to hand across threads every few steps."""

    step: int
    total: int
    frames: np.ndarray | None  # uint8 [k, h, w, 3] at latent resolution; None for audio-only
    envelope: np.ndarray  # float32 [n] loudness in [0, 1] over the clip, left to right
    seconds: float

    def image(self, height: int = 72, wave_height: int = 40, width: int = 640) -> np.ndarray:
        """One uint8 RGB picture: the frame strip on top, the loudness envelope below."""
        rows = []
        if self.frames is not None and len(self.frames):
            k, h, w, _ = self.frames.shape
            scale = max(1, height // max(h, 1))
            tiles = [np.repeat(np.repeat(f, scale, axis=0), scale, axis=1) for f in self.frames]
            gap = np.zeros((tiles[0].shape[0], 2, 3), np.uint8)
            strip = np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)
            width = strip.shape[1]
            rows.append(strip)
        rows.append(_envelope_image(self.envelope, width, wave_height))
        return np.concatenate(rows, axis=0)


def _envelope_image(envelope: np.ndarray, width: int, height: int) -> np.ndarray:
    """A centred waveform-style drawing of a [0, 1] envelope (light bars on a dark panel)."""
    img = np.full((height, width, 3), 24, np.uint8)
    if envelope.size == 0:
        return img
    xs = np.linspace(0, envelope.size - 1, width).round().astype(int)
    amp = np.clip(envelope[xs], 0.0, 1.0) * (height / 2 - 1)
    mid = height / 2
    yy = np.arange(height)[:, None]
    mask = np.abs(yy + 0.5 - mid) <= np.maximum(amp[None, :], 0.5)
    img[mask] = (120, 200, 255)
    return img


class PreviewMaker:
    """Builds previews for one pipeline; holds the fitted latent->RGB map (computed on first use)."""

    def __init__(self) -> None:
        self._rgb: Any = None  # torch [49, 3]: 48 channel weights + bias
        self._loud: Any = None  # torch [129]: 128 channel weights + bias

    def _fit_rgb(self, vae: Any, device: Any) -> Any:
        """Least-squares latent->RGB from the decoder: decode a random [48, 1, 16, 16] latent once and
        regress each 16x16 pixel block's mean colour on its latent vector (ridge, with a bias)."""
        import torch

        gen = torch.Generator().manual_seed(0)
        z = torch.randn(48, 1, 16, 16, generator=gen)
        frame = vae.decode(z.to(device)).float().cpu()[0]  # [3, H, W] in [-1, 1]
        sh, sw = frame.shape[1] // 16, frame.shape[2] // 16
        rgb = frame[:, : sh * 16, : sw * 16].reshape(3, 16, sh, 16, sw).mean(dim=(2, 4))  # [3, 16, 16]
        x = torch.cat([z[:, 0].reshape(48, -1).T, torch.ones(256, 1)], dim=1)  # [256, 49]
        y = rgb.reshape(3, -1).T  # [256, 3]
        ridge = 1e-2 * torch.eye(49)
        ridge[-1, -1] = 0.0
        return torch.linalg.solve(x.T @ x + ridge, x.T @ y)

    def video_frames(self, vae: Any, x0: Any) -> np.ndarray:
        """[48, T, h, w] clean estimate -> uint8 [k, h, w, 3] (k <= MAX_PREVIEW_FRAMES, evenly spaced)."""
        import torch

        if self._rgb is None:
            self._rgb = self._fit_rgb(vae, x0.device)
        t = x0.shape[1]
        idx = np.unique(np.linspace(0, t - 1, min(t, MAX_PREVIEW_FRAMES)).round().astype(int))
        lat = x0[:, torch.as_tensor(idx, device=x0.device)].float().cpu()  # [48, k, h, w]
        rgb = torch.einsum("ckhw,cd->khwd", lat, self._rgb[:48]) + self._rgb[48]
        return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()

    def _fit_loudness(self, audio_vae: Any) -> Any:
        """Least-squares audio latent -> log loudness: decode random latents to log-mel once and regress
        each token's mean mel energy (its 4 mel frames) on its 128-dim latent (ridge, with a bias)."""
        import torch

        n = 192
        gen = torch.Generator().manual_seed(1)
        z = torch.randn(n, 128, generator=gen)
        mel = audio_vae.decode_mel(z).float()  # [2, 4n-3, bins]
        energy = mel.exp().mean(dim=(0, 2))
        energy = torch.cat([energy[:1].expand(3), energy])  # causal: token 0 covers frame 0 only
        y = energy.reshape(n, 4).mean(dim=1).clamp_min(1e-8).log()[:, None]
        x = torch.cat([z, torch.ones(n, 1)], dim=1)
        ridge = 1e-1 * torch.eye(129)
        ridge[-1, -1] = 0.0
        return torch.linalg.solve(x.T @ x + ridge, x.T @ y)[:, 0]

    def envelope(self, audio_vae: Any, x0: Any) -> np.ndarray:
        """[L, 128] clean estimate -> per-token loudness in [0, 1] (25 points per second)."""
        if self._loud is None:
            self._loud = self._fit_loudness(audio_vae)
        log_e = x0.float().cpu() @ self._loud[:128] + self._loud[128]
        amp = (log_e - log_e.max()).mul(0.5).exp()  # sqrt of energy relative to the loudest token
        return amp.numpy().astype(np.float32)

    def make(self, pipe: Any, step: int, total: int, seconds: float, video_x0: Any, audio_x0: Any) -> Preview:
        frames = self.video_frames(pipe.vae, video_x0) if video_x0 is not None else None
        return Preview(step, total, frames, self.envelope(pipe.audio_vae, audio_x0), seconds)
