"""ReDimNet speaker network, written for NAVA Studio in plain torch.

NAVA conditions its voices on a 192-d embedding from ReDimNet (model 'M', train type 'ft_mix',
data 'vb2+vox2+cnc'). The published checkpoint is a dict ``{"model_config", "state_dict"}`` whose
``state_dict`` keys follow the module tree of the reference implementation (IDRnD/redimnet). This
module rebuilds that tree with the same attribute names and Sequential indices, so that checkpoint
loads strictly, without torchaudio (no torchaudio build matches torch 2.13): the mel front end is
implemented here with ``torch.stft`` and keeps the same persistent buffers (window, mel filterbank,
pre-emphasis filter) that the checkpoint carries.

Shapes: waveform ``[B, N]`` (16 kHz mono) -> log-mel ``[B, F, T]`` -> 2-D maps ``[B, C, F, T]``,
reshaped back and forth to 1-D ``[B, C*F, T]`` between stages -> attentive statistics pooling ->
``[B, embed_dim]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

# One stage: (frequency stride, number of 2-D blocks, channel expansion, kernel sizes, reduction
# of the 1-D attention block or None for no 1-D block).
Stage = tuple[int, int, int, list, int | None]

# The 'M' setup: the reference implementation's default, documented there as the M version.
M_STAGES: list[Stage] = [
    (1, 2, 1, [(3, 3)], 12),
    (2, 2, 1, [(3, 3)], 12),
    (1, 3, 1, [(3, 3)], 12),
    (2, 4, 1, [(3, 3)], 8),
    (1, 4, 1, [(3, 3)], 8),
    (2, 4, 1, [(3, 3)], 4),
]

BLOCK_2D_TYPES = ("convnext_like", "convnext_like_relu", "basic_resnet", "basic_resnet_fwse")
BLOCK_1D_TYPES = ("att", "fc", "conv", "conv+att")
POOLINGS = ("ASTP", "TSTP", "TAP", "TSDP")
SPEC_KEYS = (
    "sample_rate", "n_fft", "win_length", "f_min", "f_max", "do_spec_aug", "norm_signal",
    "do_preemph", "spec_norm", "freq_start_bin", "num_apply_spec_aug", "freq_mask_width",
    "time_mask_width",
)


@dataclass
class ReDimNetConfig:
    """The ``model_config`` of a ReDimNet checkpoint (keyword names as the checkpoint stores them)."""

    F: int = 72
    C: int = 16
    block_1d_type: str = "att"
    block_2d_type: str = "convnext_like"
    stages_setup: list = field(default_factory=lambda: [tuple(s) for s in M_STAGES])
    group_divisor: int | None = 4
    out_channels: int | None = None
    embed_dim: int = 192
    num_classes: int | None = None
    class_dropout: float = 0.0
    feat_agg_dropout: float = 0.0
    head_activation: str | None = None
    hop_length: int = 160
    pooling_func: str = "ASTP"
    feat_type: str = "pt"
    global_context_att: bool = False
    emb_bn: bool = False
    spec_params: dict = field(default_factory=lambda: {"do_spec_aug": False})
    return_all_outputs: bool = False
    tf_optimized_arch: bool = False

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "ReDimNetConfig":
        """Build from a checkpoint's ``model_config``; unknown or unsupported values raise ValueError
        naming them, because silently ignoring one would build a different network."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"model_config has unknown keys {unknown}")
        out = cls(**cfg)
        out.validate()
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        problems = []
        if self.block_2d_type not in BLOCK_2D_TYPES:
            problems.append(f"block_2d_type {self.block_2d_type!r} (supported: {BLOCK_2D_TYPES})")
        if self.block_1d_type not in BLOCK_1D_TYPES:
            problems.append(f"block_1d_type {self.block_1d_type!r} (supported: {BLOCK_1D_TYPES})")
        if self.pooling_func not in POOLINGS:
            problems.append(f"pooling_func {self.pooling_func!r} (supported: {POOLINGS})")
        if self.feat_type not in ("pt", "pt_mel"):
            problems.append(f"feat_type {self.feat_type!r} (only the torch mel front end 'pt')")
        if self.tf_optimized_arch:
            problems.append("tf_optimized_arch=True")
        if self.head_activation is not None:
            problems.append(f"head_activation {self.head_activation!r}")
        bad_spec = sorted(set(self.spec_params) - set(SPEC_KEYS))
        if bad_spec:
            problems.append(f"spec_params keys {bad_spec}")
        f = self.F
        for i, stage in enumerate(self.stages_setup):
            stride = stage[0]
            if stride not in (1, 2, 3) or f % stride:
                problems.append(f"stage {i}: stride {stride} does not divide {f} frequency bins")
            f //= max(stride, 1)
        if problems:
            raise ValueError("unsupported ReDimNet model_config: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# Mel front end (torchaudio-free; same buffers as the checkpoint)
# ---------------------------------------------------------------------------------------------


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def htk_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> Tensor:
    """Triangular HTK-scale filters without area normalisation, ``[n_freqs, n_mels]``: the filterbank
    kind the checkpoint's ``mel_scale.fb`` buffer holds (recomputed only for new checkpoints)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    rising = -slopes[:, :-2] / f_diff[:-1]
    falling = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class PreEmphasis(nn.Module):
    """y[n] = x[n] - 0.97 x[n-1], with the first sample reflected; the filter is a saved buffer."""

    def __init__(self, coef: float = 0.97) -> None:
        super().__init__()
        self.register_buffer("flipped_filter", torch.tensor([[[-coef, 1.0]]]))

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x.unsqueeze(1), (1, 0), mode="reflect")
        return F.conv1d(x, self.flipped_filter).squeeze(1)


class WaveNormalize(nn.Module):
    """Per-utterance zero mean / unit variance (used only when ``norm_signal`` is set)."""

    def forward(self, x: Tensor) -> Tensor:
        return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True, unbiased=False) + 1e-6)


class _StftPower(nn.Module):
    def __init__(self, n_fft: int, win_length: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.register_buffer("window", torch.hamming_window(win_length))

    def forward(self, x: Tensor) -> Tensor:
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
        return spec.abs().pow(2.0)


class _MelProjection(nn.Module):
    def __init__(self, fb: Tensor) -> None:
        super().__init__()
        self.register_buffer("fb", fb)

    def forward(self, spec: Tensor) -> Tensor:
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class MelPower(nn.Module):
    """Power mel spectrogram ``[B, n_mels, T]`` (center-padded STFT, periodic Hamming window)."""

    def __init__(self, sample_rate: int, n_fft: int, win_length: int, hop_length: int,
                 f_min: float, f_max: float, n_mels: int) -> None:
        super().__init__()
        self.spectrogram = _StftPower(n_fft, win_length, hop_length)
        self.mel_scale = _MelProjection(htk_mel_filterbank(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate))

    def forward(self, x: Tensor) -> Tensor:
        return self.mel_scale(self.spectrogram(x))


class MelFrontEnd(nn.Module):
    """Waveform -> log mel with per-utterance mean normalisation over time (inference path only;
    the training-time SpecAugment of the reference has no weights and is not applied at inference)."""

    def __init__(self, n_mels: int, hop_length: int, sample_rate: int = 16000, n_fft: int = 512,
                 win_length: int = 400, f_min: float = 20.0, f_max: float = 7600.0,
                 norm_signal: bool = False, do_preemph: bool = True, spec_norm: str = "mn",
                 **_augment_only: Any) -> None:
        super().__init__()
        self.torchfbank = nn.Sequential(
            WaveNormalize() if norm_signal else nn.Identity(),
            PreEmphasis() if do_preemph else nn.Identity(),
            MelPower(sample_rate, n_fft, win_length, hop_length, f_min, f_max, n_mels),
        )
        self.norm_kind = spec_norm
        if spec_norm == "bn":
            self.spec_norm = nn.BatchNorm1d(n_mels)

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = (self.torchfbank(x.float()) + 1e-6).log()
        if self.norm_kind == "mn":
            x = x - x.mean(-1, keepdim=True)
        elif self.norm_kind == "mvn":
            x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-8)
        elif self.norm_kind == "bn":
            x = self.spec_norm(x)
        return x.to(dtype)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


class ChannelNorm(nn.Module):
    """LayerNorm over dim 1 of ``[B, C, ...]`` (parameters ``weight``/``bias``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return self.weight.view(shape) * x + self.bias.view(shape)


class Flatten2dTo1d(nn.Module):
    """``[B, C, F, T]`` -> ``[B, F*C, T]`` (frequency-major, as the checkpoint was trained)."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, f, t = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, c * f, t)


class Unflatten1dTo2d(nn.Module):
    """Inverse of :class:`Flatten2dTo1d` for a known (f, c)."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.f, self.c = f, c

    def forward(self, x: Tensor) -> Tensor:
        b, _, t = x.shape
        return x.reshape(b, self.f, self.c, t).permute(0, 2, 1, 3)


class LayerMix(nn.Module):
    """Softmax-weighted sum over the outputs of all earlier stages (the 'w' parameter,
    shape ``[1, N, C, 1]``), which is how every stage sees the whole history."""

    def __init__(self, n: int, channels: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, n, channels, 1))

    def forward(self, xs: list[Tensor]) -> Tensor:
        weights = torch.softmax(self.w, dim=1)
        return (weights * torch.stack(xs, dim=1)).sum(dim=1)


class ConvNeXtLike(nn.Module):
    """Grouped depthwise conv(s) -> BatchNorm -> activation -> pointwise conv, residual."""

    def __init__(self, channels: int, dim: int, kernel_sizes: list, gdiv: int | None,
                 activation: str = "gelu") -> None:
        super().__init__()
        conv = nn.Conv2d if dim == 2 else nn.Conv1d
        bn = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
        groups = channels // gdiv if gdiv is not None else 1
        self.dwconvs = nn.ModuleList(
            [conv(channels, channels, kernel_size=k, padding="same", groups=groups) for k in kernel_sizes])
        self.norm = bn(channels * len(kernel_sizes))
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.pwconv1 = conv(channels * len(kernel_sizes), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([conv(x) for conv in self.dwconvs], dim=1)
        return x + self.pwconv1(self.act(self.norm(y)))


class FreqSqueezeExcite(nn.Module):
    """Frequency-wise squeeze-and-excitation over ``[B, C, F, T]``."""

    def __init__(self, num_freq: int, hidden: int) -> None:
        super().__init__()
        self.squeeze = nn.Linear(num_freq, hidden)
        self.exitation = nn.Linear(hidden, num_freq)

    def forward(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.exitation(torch.relu(self.squeeze(x.mean(dim=(1, 3))))))
        return x * s[:, None, :, None]


class ResidualBasic(nn.Module):
    """ResNet basic block with grouped + pointwise convolutions, optional frequency-wise SE."""

    def __init__(self, channels: int, num_freq: int, gdiv: int | None, use_se: bool) -> None:
        super().__init__()
        c = channels
        grouped = gdiv is not None
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False, groups=c // gdiv if grouped else 1)
        self.conv1pw = nn.Conv2d(c, c, 1) if grouped else nn.Identity()
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False, groups=c // gdiv if grouped else 1)
        self.conv2pw = nn.Conv2d(c, c, 1) if grouped else nn.Identity()
        self.bn2 = nn.BatchNorm2d(c)
        self.se = FreqSqueezeExcite(num_freq, min(64, max(c, 32))) if use_se else nn.Identity()
        self.downsample = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn1(torch.relu(self.conv1pw(self.conv1(x))))
        y = self.se(self.bn2(self.conv2pw(self.conv2(y))))
        return torch.relu(y + self.downsample(x))


class Block2d(nn.Module):
    """Holder named ``conv_block`` (the checkpoint's key level)."""

    def __init__(self, channels: int, num_freq: int, block_type: str, gdiv: int | None) -> None:
        super().__init__()
        if block_type.startswith("convnext_like"):
            act = "relu" if block_type.endswith("relu") else "gelu"
            self.conv_block: nn.Module = ConvNeXtLike(channels, 2, [(3, 3)], gdiv, act)
        else:
            self.conv_block = ResidualBasic(channels, num_freq, gdiv, block_type.endswith("fwse"))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_block(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over ``[B, T, D]`` (projections k, v, q, out)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x), approximate="tanh"))


class TransformerLayer(nn.Module):
    """Post-norm transformer layer on channels-first ``[B, D, T]`` input."""

    def __init__(self, dim: int, mlp: int, heads: int = 4) -> None:
        super().__init__()
        self.attention = SelfAttention(dim, heads)
        self.layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feed_forward = FeedForward(dim, mlp)
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        h = x.transpose(1, 2)
        h = self.layer_norm(h + self.attention(h))
        h = self.final_layer_norm(h + self.feed_forward(h))
        return h.transpose(1, 2)


class ConvPositional(nn.Module):
    """Depthwise conv positional encoding with a channel LayerNorm, residual."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = ChannelNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.norm(self.conv(x))


class TimeContext1d(nn.Module):
    """1-D block on ``[B, C*F, T]``: reduce width, model time context, expand back, residual."""

    def __init__(self, dim: int, hidden: int, block_type: str, pos_kernel: int = 59) -> None:
        super().__init__()
        self.red_dim_conv = nn.Sequential(nn.Conv1d(dim, hidden, 1), ChannelNorm(hidden))
        if block_type == "fc":
            self.tcm = nn.Sequential(nn.Conv1d(hidden, hidden * 2, 1), ChannelNorm(hidden * 2), nn.GELU(),
                                     nn.Conv1d(hidden * 2, hidden, 1))
        elif block_type == "conv":
            self.tcm = nn.Sequential(*[ConvNeXtLike(hidden, 1, [7, 15, 31], 1) for _ in range(4)])
        elif block_type == "att":
            self.tcm = nn.Sequential(ConvPositional(hidden, pos_kernel), TransformerLayer(hidden, hidden * 2))
        else:  # conv+att
            self.tcm = nn.Sequential(*[ConvNeXtLike(hidden, 1, [k], 1) for k in (7, 19, 31, 59)],
                                     TransformerLayer(hidden, hidden))
        self.exp_dim_conv = nn.Conv1d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.exp_dim_conv(self.tcm(self.red_dim_conv(x)))


class _Stage(nn.Sequential):
    """A stage: mix earlier outputs, reshape to 2-D, stride over frequency, 2-D blocks, back to 1-D,
    optional 1-D block. Its first element takes the list of earlier outputs."""


class Backbone(nn.Module):
    def __init__(self, cfg: ReDimNetConfig) -> None:
        super().__init__()
        C, Fq = cfg.C, cfg.F
        width = C * Fq
        gdiv = cfg.group_divisor
        relu_everywhere = "relu" in cfg.block_1d_type and "relu" in cfg.block_2d_type
        self.stem = nn.Sequential(nn.Conv2d(1, C, 3, padding="same"), ChannelNorm(C), Flatten2dTo1d())
        c, f = C, Fq
        self.num_stages = len(cfg.stages_setup)
        for i, (stride, num_blocks, conv_exp, _kernels, att_red) in enumerate(cfg.stages_setup):
            n_in = i + 1
            layers: list[nn.Module] = [
                LayerMix(n_in, width if n_in > 1 else 1),
                Unflatten1dTo2d(f, c),
                nn.Conv2d(c, stride * c * conv_exp, kernel_size=(stride, 1), stride=(stride, 1)),
            ]
            c, f = stride * c, f // stride
            layers += [Block2d(c * conv_exp, f, cfg.block_2d_type, gdiv) for _ in range(num_blocks)]
            if conv_exp != 1:
                layers.append(nn.Sequential(
                    nn.Conv2d(c * conv_exp, c, 3, padding="same", groups=c // gdiv if gdiv is not None else 1),
                    nn.BatchNorm2d(c, eps=1e-6),
                    nn.ReLU() if relu_everywhere else nn.GELU(),
                    nn.Conv2d(c, c, 1),
                ))
            layers.append(Flatten2dTo1d())
            if att_red is not None:
                layers.append(TimeContext1d(width, width // att_red, cfg.block_1d_type))
            setattr(self, f"stage{i}", _Stage(*layers))
        self.fin_wght1d = LayerMix(self.num_stages + 1, width)
        if cfg.out_channels is not None:
            self.mfa: nn.Module = nn.Sequential(nn.Conv1d(width, cfg.out_channels, 1), nn.BatchNorm1d(cfg.out_channels))
        else:
            self.mfa = nn.Identity()

    def forward(self, mel: Tensor) -> Tensor:
        outs = [self.stem(mel)]
        for i in range(self.num_stages):
            stage = getattr(self, f"stage{i}")
            x = stage[0](outs)
            for layer in list(stage)[1:]:
                x = layer(x)
            outs.append(x)
        return self.mfa(self.fin_wght1d(outs))


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling: attention-weighted mean and std over time, ``[B, 2D]``."""

    def __init__(self, dim: int, global_context: bool, bottleneck: int = 128) -> None:
        super().__init__()
        self.global_context = global_context
        self.linear1 = nn.Conv1d(dim * 3 if global_context else dim, bottleneck, 1)
        self.linear2 = nn.Conv1d(bottleneck, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x_in = x
        if self.global_context:
            mean = x.mean(-1, keepdim=True).expand_as(x)
            std = torch.sqrt(x.var(-1, keepdim=True) + 1e-7).expand_as(x)
            x_in = torch.cat([x, mean, std], dim=1)
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x_in))), dim=2)
        mean = (alpha * x).sum(2)
        var = (alpha * x * x).sum(2) - mean * mean
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-7))], dim=1)


class StatsPool(nn.Module):
    """Parameter-free temporal pooling: 'TSTP' (mean+std), 'TAP' (mean), 'TSDP' (std)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1)
        std = torch.sqrt(x.var(-1) + 1e-7)
        return {"TSTP": lambda: torch.cat([mean, std], 1), "TAP": lambda: mean, "TSDP": lambda: std}[self.kind]()


class ReDimNet(nn.Module):
    """Waveform ``[B, N]`` at 16 kHz -> speaker embedding ``[B, embed_dim]`` (no L2 normalisation,
    as NAVA feeds the raw output to its speaker MLP)."""

    def __init__(self, cfg: ReDimNetConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.backbone = Backbone(cfg)
        self.spec = MelFrontEnd(n_mels=cfg.F, hop_length=cfg.hop_length, **cfg.spec_params)
        pooled_in = cfg.out_channels if cfg.out_channels is not None else cfg.C * cfg.F
        if cfg.pooling_func == "ASTP":
            self.pool: nn.Module = AttentiveStatsPool(pooled_in, cfg.global_context_att)
            pooled = 2 * pooled_in
        else:
            self.pool = StatsPool(cfg.pooling_func)
            pooled = pooled_in * (2 if cfg.pooling_func == "TSTP" else 1)
        self.bn = nn.BatchNorm1d(pooled)
        self.linear = nn.Linear(pooled, cfg.embed_dim)
        if cfg.emb_bn:
            self.bn2 = nn.BatchNorm1d(cfg.embed_dim)
        if cfg.num_classes is not None:
            self.cls_head = nn.Sequential(nn.ReLU(), nn.Dropout(cfg.class_dropout),
                                          nn.Linear(cfg.embed_dim, cfg.num_classes), nn.Identity())

    def embed_mel(self, mel: Tensor) -> Tensor:
        """Log-mel ``[B, F, T]`` -> output (embedding, or class scores if the config has a head)."""
        out = self.linear(self.bn(self.pool(self.backbone(mel.unsqueeze(1)))))
        if self.config.emb_bn:
            out = self.bn2(out)
        if self.config.num_classes is not None:
            out = self.cls_head(out)
        return out

    def forward(self, wav: Tensor) -> Tensor:
        return self.embed_mel(self.spec(wav))
