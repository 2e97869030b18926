"""`WanAVModel`: the NAVA audio-video DiT backbone with the release's module and parameter names."""

from __future__ import annotations

import math

import torch
from torch import nn

from nava_core.config import NAVAConfig

from .blocks import AUDIO, VIDEO, DoubleStreamBlock, Head, SingleStreamBlock, StreamState
from .embeddings import AudioPatchEmbedding, SpeakerEmbedding, sinusoidal_embedding
from .precision import low_dtype, precision_context, to_low
from .rope import audio_rope, pad_rotations, video_rope

def _pad_stack(tokens: list[torch.Tensor], length: int) -> torch.Tensor:
    """list of [L_i, D] -> [B, length, D], zero-padded at the end."""
    out = tokens[0].new_zeros(len(tokens), length, tokens[0].shape[-1])
    for i, u in enumerate(tokens):
        out[i, : u.shape[0]] = u
    return out


def _key_mask(lengths: list[int], length: int, device: torch.device) -> torch.Tensor | None:
    if all(n == length for n in lengths):
        return None
    return torch.arange(length, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]


class WanAVModel(nn.Module):
    """Joint audio-video diffusion transformer (NAVA_SPEC.md sections 2-4).

    Samples of different lengths are batched as lists; outputs are lists of float32 velocities with
    the input shapes. `config.precision` selects the release's bf16 policy ("nava") or the same graph
    in fp32 ("fp32").
    """

    def __init__(self, config: NAVAConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.patch_embedding = nn.Conv3d(c.vid_in_dim, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.patch_embedding_audio = AudioPatchEmbedding(c.audio_in_dim, c.dim, c.audio_hidden_dim)
        self.speaker_embedding = SpeakerEmbedding(c.speaker_dim, c.dim)
        self.text_embedding = nn.Sequential(
            nn.Linear(c.text_dim, c.dim), nn.GELU(approximate="tanh"), nn.Linear(c.dim, c.dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(c.freq_dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, 6 * c.dim))
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(c.dim, c.ffn_dim, c.num_heads, c.eps) for _ in range(c.num_double_layers)
        )
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(c.dim, c.ffn_dim, c.num_heads, c.eps) for _ in range(c.num_single_layers)
        )
        self.head = Head(c.dim, math.prod(c.patch_size) * c.vid_out_dim, c.eps)
        self.head_audio = Head(c.dim, c.audio_out_dim, c.eps)
        self.sequence_parallel = None  # a nava_core.ulysses.UlyssesContext when run sequence-parallel

    @property
    def precision(self) -> str:
        return self.config.precision

    def set_precision(self, precision: str) -> None:
        """Switch policy without reloading weights ("nava" or "fp32")."""
        self.config = self.config.with_precision(precision)

    # ---- inputs -------------------------------------------------------------------------------

    def _embed_video(self, video: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
        tokens, grids = [], []
        for u in video:
            x = self.patch_embedding(u.unsqueeze(0).to(self.patch_embedding.weight.dtype))
            grids.append(tuple(x.shape[2:]))
            tokens.append(x.flatten(2).transpose(1, 2)[0])
        return _pad_stack(tokens, max(t.shape[0] for t in tokens)), grids

    def _embed_audio(self, audio: list[torch.Tensor]) -> torch.Tensor:
        w = self.patch_embedding_audio[0].weight
        tokens = [self.patch_embedding_audio(u.unsqueeze(0).to(w.dtype))[0] for u in audio]
        return _pad_stack(tokens, max(t.shape[0] for t in tokens))

    def _embed_text(
        self,
        context: list[torch.Tensor],
        speaker_embeddings: list[torch.Tensor] | None,
        speaker_positions: list[list[int]] | None,
    ) -> torch.Tensor:
        text_len = self.config.text_len
        for i, u in enumerate(context):
            if u.shape[0] > text_len:
                raise ValueError(f"context {i} has {u.shape[0]} tokens; the model takes at most {text_len}")
        w = self.text_embedding[0].weight
        ctx = self.text_embedding(_pad_stack([u.to(w.dtype) for u in context], text_len))
        if speaker_embeddings is None or speaker_positions is None:
            return ctx
        return self._inject_speakers(ctx, speaker_embeddings, speaker_positions)

    def _inject_speakers(
        self, ctx: torch.Tensor, embeddings: list[torch.Tensor], positions: list[list[int]]
    ) -> torch.Tensor:
        """Replace context row positions[i][j] of sample i by speaker_embedding(embeddings[i][j])."""
        if len(embeddings) != ctx.shape[0] or len(positions) != ctx.shape[0]:
            raise ValueError(
                f"speaker_embeddings ({len(embeddings)}) and speaker_positions ({len(positions)}) need one "
                f"entry per sample ({ctx.shape[0]})"
            )
        rows, emb = [], []
        for i, (pos, e) in enumerate(zip(positions, embeddings)):
            if len(pos) != e.shape[0]:
                raise ValueError(f"sample {i}: {len(pos)} speaker positions but {e.shape[0]} speaker embeddings")
            for p in pos:
                if not 0 <= p < ctx.shape[1]:
                    raise ValueError(f"sample {i}: speaker position {p} is outside the {ctx.shape[1]}-row context")
                rows.append(i * ctx.shape[1] + p)
            emb.append(e)
        if not rows:
            return ctx
        w = self.speaker_embedding.net[1].weight
        spk = self.speaker_embedding(torch.cat(emb).to(device=ctx.device, dtype=w.dtype))
        flat = ctx.reshape(-1, ctx.shape[-1]).clone()
        flat[torch.tensor(rows, device=ctx.device)] = spk.to(flat.dtype)
        return flat.view_as(ctx)

    def _time_rows(self, t: torch.Tensor, with_clean_row: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Time embedding e [B, K, D] and projection e0 [B, K, 6, D] for K timestep rows per sample.

        Row 0 is the sample's t; row 1 (image-to-video only) is t = 0 for the clean first frame.
        """
        tt = t.reshape(-1, 1)
        if with_clean_row:
            tt = torch.cat([tt, torch.zeros_like(tt)], dim=1)
        b, k = tt.shape
        w = self.time_embedding[0].weight
        low = low_dtype(w.device)
        sin = sinusoidal_embedding(tt.flatten(), self.config.freq_dim).to(low if low is not None else w.dtype)
        e = self.time_embedding(sin).unflatten(0, (b, k))
        e0 = self.time_projection(e).unflatten(-1, (6, self.config.dim))
        return e, e0

    # ---- forward ------------------------------------------------------------------------------

    def forward(
        self,
        video: list[torch.Tensor] | None,
        audio: list[torch.Tensor] | None,
        t: torch.Tensor,
        context: list[torch.Tensor],
        speaker_embeddings: list[torch.Tensor] | None = None,
        speaker_positions: list[list[int]] | None = None,
        masking_modality: bool = False,
        first_frame_is_clean: bool = False,
    ) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
        """Velocities for a batch. video: [48,T,H,W] latents; audio: [L,128] tokens; t: [B] integer
        timesteps; context: real text tokens [Lt,4096] (padded to text_len here); speaker positions
        index rows of the padded context; `masking_modality` runs the no-align (block-diagonal) pass;
        `first_frame_is_clean` gives latent frame 0 the timestep 0 (image-to-video)."""
        if video is None and audio is None:
            raise ValueError("forward needs video, audio, or both")
        batch = len(video) if video is not None else len(audio)
        for name, items in (("audio", audio), ("context", context)):
            if items is not None and len(items) != batch:
                raise ValueError(f"{name} has {len(items)} samples, expected {batch}")
        device = self.patch_embedding.weight.device
        t = torch.as_tensor(t, device=device).reshape(-1)
        if t.shape[0] != batch:
            raise ValueError(f"t has {t.shape[0]} entries for {batch} samples")
        with precision_context(self.config.precision, device):
            return self._forward(
                video, audio, t, context, speaker_embeddings, speaker_positions, masking_modality,
                first_frame_is_clean and video is not None, device,
            )

    def _forward(
        self,
        video: list[torch.Tensor] | None,
        audio: list[torch.Tensor] | None,
        t: torch.Tensor,
        context: list[torch.Tensor],
        speaker_embeddings: list[torch.Tensor] | None,
        speaker_positions: list[list[int]] | None,
        masking_modality: bool,
        clean_first_frame: bool,
        device: torch.device,
    ) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
        """Embed both streams, run the blocks on [video, audio] stream lists, apply the heads.

        Sequence-dim side inputs (RoPE rotations, key masks, per-token time indices) are built once
        here in `StreamState`s, so a context-parallel wrapper can shard them with the tokens.
        """
        c = self.config
        head_dim = c.head_dim
        e, e0 = self._time_rows(t, clean_first_frame)
        streams: list[torch.Tensor | None] = [None, None]
        states: list[StreamState | None] = [None, None]
        grids: list[tuple[int, int, int]] = []
        audio_lengths: list[int] = []
        if video is not None:
            x, grids = self._embed_video([u.to(device) for u in video])
            lengths = [math.prod(g) for g in grids]
            index = None
            if clean_first_frame:
                first = torch.tensor([g[1] * g[2] for g in grids], device=device)
                index = (torch.arange(x.shape[1], device=device)[None, :] < first[:, None]).long()
            states[VIDEO] = StreamState(
                rotations=pad_rotations([video_rope(g, head_dim, device) for g in grids], x.shape[1]),
                key_mask=_key_mask(lengths, x.shape[1], device),
                time_index=index,
                e0=e0,
            )
            streams[VIDEO] = to_low(x)
        if audio is not None:
            x = self._embed_audio([u.to(device) for u in audio])
            audio_lengths = [u.shape[0] for u in audio]
            states[AUDIO] = StreamState(
                rotations=pad_rotations(
                    [audio_rope(n, head_dim, c.temporal_rope_scaling_factor, device) for n in audio_lengths],
                    x.shape[1],
                ),
                key_mask=_key_mask(audio_lengths, x.shape[1], device),
                time_index=None,
                e0=e0[:, :1],
            )
            streams[AUDIO] = to_low(x)
        ctx = self._embed_text([u.to(device) for u in context], speaker_embeddings, speaker_positions)

        sp = getattr(self, "sequence_parallel", None)
        block_states = states
        if sp is not None:  # Ulysses: the blocks run on this rank's slice of both streams
            streams, block_states, shard = sp.shard(streams, states)
        for block in self.double_blocks:
            streams = block(streams, block_states, ctx, masking_modality)
        for block in self.single_blocks:
            streams = block(streams, block_states, ctx, masking_modality)
        if sp is not None:
            streams = sp.gather(streams, shard)

        video_out = audio_out = None
        if video is not None:
            y = self.head(streams[VIDEO], e, states[VIDEO].time_index)
            video_out = [self._unpatchify(y[i], g) for i, g in enumerate(grids)]
        if audio is not None:
            y = self.head_audio(streams[AUDIO], e[:, :1], None)
            audio_out = [to_low(y[i, :n]).float() for i, n in enumerate(audio_lengths)]
        return video_out, audio_out

    def _unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """[L, prod(patch)*C] tokens (channel innermost) -> [C, F*pt, H*ph, W*pw] float32."""
        f, h, w = grid
        pt, ph, pw = self.config.patch_size
        ch = self.config.vid_out_dim
        u = to_low(tokens[: f * h * w]).float().view(f, h, w, pt, ph, pw, ch)
        return u.permute(6, 0, 3, 1, 4, 2, 5).reshape(ch, f * pt, h * ph, w * pw)
