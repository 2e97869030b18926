"""Band-limited resampling with the same filter as the release (torchaudio's default), in plain torch.

The release resamples its 48 kHz vocoder output to 16 kHz and every voice reference to 16 kHz with
`torchaudio.functional.resample` at its defaults: a windowed-sinc low-pass (Hann window, 6 zero
crossings per side, cut-off at 0.99 of the lower Nyquist) applied as a polyphase strided convolution
(NAVA_SPEC.md 6). The project may not import torchaudio, so the same algorithm is written here; it
agrees with torchaudio's output to float rounding (tests/test_resample.py against
`fixtures/resample/`).
"""

from __future__ import annotations

import math

import torch

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


def sinc_kernel(orig: int, new: int, width_zeros: int = LOWPASS_FILTER_WIDTH, rolloff: float = ROLLOFF,
                dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
    """Polyphase filter bank `[new, 1, 2*pad + orig]` for a reduced ratio orig:new, and its padding.

    Phase j (output sample j of each block of `new`) sits at input offset j*orig/new; each tap is a
    sinc at the cut-off frequency `min(orig, new) * rolloff` times a squared-cosine (Hann) window
    spanning `width_zeros` zero crossings each side, scaled so the pass band has unit gain.
    """
    cutoff = min(orig, new) * rolloff
    pad = math.ceil(width_zeros * orig / cutoff)
    taps = torch.arange(-pad, pad + orig, dtype=dtype, device=device)[None, None] / orig
    phases = torch.arange(0, -new, -1, dtype=dtype, device=device)[:, None, None] / new
    x = ((phases + taps) * cutoff).clamp(-width_zeros, width_zeros)
    window = torch.cos(x * (math.pi / width_zeros / 2)) ** 2
    x = x * math.pi
    sinc = torch.where(x == 0, torch.ones((), dtype=dtype, device=device), torch.sin(x) / x)
    return sinc * window * (cutoff / orig), pad


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample `[..., N]` float audio from `orig_rate` to `new_rate` Hz (torchaudio's defaults).

    Output length is ceil(N * new / orig). Equal rates return the input unchanged.
    """
    if orig_rate <= 0 or new_rate <= 0 or int(orig_rate) != orig_rate or int(new_rate) != new_rate:
        raise ValueError(f"sample rates must be positive whole numbers, got {orig_rate} -> {new_rate}")
    if not wave.is_floating_point():
        raise ValueError(f"resample needs a floating-point waveform, got {wave.dtype}")
    if orig_rate == new_rate:
        return wave
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    kernel, pad = sinc_kernel(orig, new, dtype=wave.dtype, device=wave.device)
    shape = wave.shape
    flat = wave.reshape(-1, shape[-1])
    length = flat.shape[-1]
    padded = torch.nn.functional.pad(flat, (pad, pad + orig))
    out = torch.nn.functional.conv1d(padded[:, None], kernel, stride=orig)  # [C, new, blocks]
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    out = out[:, : math.ceil(new * length / orig)]
    return out.reshape(*shape[:-1], out.shape[-1])


__all__ = ["resample", "sinc_kernel", "LOWPASS_FILTER_WIDTH", "ROLLOFF"]
