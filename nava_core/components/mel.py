"""Plain-torch STFT/mel helpers (no torchaudio): the audio VAE's mel front end and BWE buffers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale (linear below 1 kHz, log above), as librosa's default."""
    f = torch.as_tensor(f, dtype=torch.float64)
    lin = f / (200.0 / 3)
    logstep = math.log(6.4) / 27.0
    return torch.where(f >= 1000.0, 15.0 + torch.log(f / 1000.0) / logstep, lin)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    logstep = math.log(6.4) / 27.0
    return torch.where(m >= 15.0, 1000.0 * torch.exp(logstep * (m - 15.0)), m * (200.0 / 3))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """[n_mels, n_fft//2+1] Slaney-normalised triangular filters."""
    f_max = f_max or sample_rate / 2
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    pts = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(f_min))), float(hz_to_mel(torch.tensor(f_max))),
                                   n_mels + 2, dtype=torch.float64))
    lower, centre, upper = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    fb = fb * (2.0 / (upper - lower))
    return fb.float()


def hann_dft_basis(n_fft: int, win_length: int) -> torch.Tensor:
    """[2*(n_fft//2+1), 1, n_fft] windowed DFT rows (real then imaginary), for conv1d STFT."""
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    window = torch.zeros(n_fft, dtype=torch.float64)
    off = (n_fft - win_length) // 2
    window[off:off + win_length] = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
    ang = 2 * math.pi * k * n / n_fft
    basis = torch.cat([torch.cos(ang) * window, -torch.sin(ang) * window], dim=0)
    return basis[:, None, :].float()


def causal_log_mel(waveform: torch.Tensor, sample_rate: int = 16_000, n_fft: int = 1024, hop: int = 160,
                   win_length: int = 1024, n_mels: int = 64) -> torch.Tensor:
    """[C, N] waveform -> [C, N//hop, n_mels] log-mel (left-padded so frame i ends at sample (i+1)*hop)."""
    x = waveform.float()
    if x.ndim == 1:
        x = x[None]
    n_frames = x.shape[-1] // hop
    x = x[:, : n_frames * hop]
    x = F.pad(x[:, None], (win_length - hop, 0))
    spec = F.conv1d(x, hann_dft_basis(n_fft, win_length)[:, :, :win_length] if n_fft == win_length
                    else hann_dft_basis(n_fft, win_length), stride=hop)
    half = spec.shape[1] // 2
    mag = torch.sqrt(spec[:, :half] ** 2 + spec[:, half:] ** 2)
    mel = torch.matmul(mel_filterbank(sample_rate, n_fft, n_mels), mag)
    return torch.log(torch.clamp(mel, min=1e-5)).transpose(1, 2).contiguous()


def lowpass_decimate(wave: torch.Tensor, factor: int, taps_per_side: int = 64, beta: float = 8.0) -> torch.Tensor:
    """Integer-factor downsampling with a Kaiser-windowed sinc low-pass (cut-off 0.9 x new Nyquist)."""
    if factor == 1:
        return wave
    n = torch.arange(-taps_per_side * factor, taps_per_side * factor + 1, dtype=torch.float64)
    cutoff = 0.9 / factor
    h = cutoff * torch.sinc(cutoff * n) * torch.kaiser_window(len(n), periodic=False, beta=beta, dtype=torch.float64)
    h = (h / h.sum()).float()
    pad = len(h) // 2
    x = F.pad(wave.float()[:, None], (pad, pad), mode="reflect" if wave.shape[-1] > pad else "constant")
    out = F.conv1d(x, h.flip(0)[None, None], stride=factor)[:, 0]
    return out[:, : wave.shape[-1] // factor]
