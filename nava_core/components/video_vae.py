"""Wan2.2 video VAE (z_dim 48, stride 4x16x16) on top of diffusers' `AutoencoderKLWan`.

Why a wrapper: the release ships `Wan2.2_VAE.pth` in Wan's own key layout and without a config, and the
DiT works in a normalised latent space ((mu - mean) / std, per channel). This module owns the key map,
the width inference from tensor shapes, the (de)normalisation and the image-to-video first-frame
encode, so the pipeline only ever sees DiT-space latents and [-1, 1] pixels.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nava_core.config import VAE_SPATIAL_STRIDE, Resolution, pixel_frames
from nava_core.statedict import expected_shapes, require_state_dict

logger = logging.getLogger(__name__)

# Per-channel latent statistics of Wan2.2 (release vae2_2.py; DiT latents are (mu - mean) / std).
WAN22_LATENTS_MEAN: tuple[float, ...] = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_LATENTS_STD: tuple[float, ...] = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

# Release tiling (NAVA_SPEC.md 6), in latents; diffusers takes pixel sizes (x16).
TILE_LATENTS = (22, 40)
TILE_STRIDE_LATENTS = (14, 26)

RELEASE_NUM_KEYS = 196


class VideoVAEError(ValueError):
    """A video VAE file that cannot be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class WanVAEConfig:
    """The constructor arguments of `AutoencoderKLWan` for a Wan2.2-style VAE."""

    base_dim: int = 160
    decoder_base_dim: int = 256
    z_dim: int = 48

    def diffusers_kwargs(self) -> dict:
        return dict(
            base_dim=self.base_dim,
            decoder_base_dim=self.decoder_base_dim,
            z_dim=self.z_dim,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=2,
            attn_scales=[],
            temperal_downsample=[False, True, True],
            dropout=0.0,
            latents_mean=list(WAN22_LATENTS_MEAN),
            latents_std=list(WAN22_LATENTS_STD),
            is_residual=True,
            in_channels=12,
            out_channels=12,
            patch_size=2,
            scale_factor_temporal=4,
            scale_factor_spatial=16,
        )


# ---- key map ---------------------------------------------------------------------------------

_RESNET_PARTS = (
    (".residual.0.gamma", ".norm1.gamma"),
    (".residual.2.", ".conv1."),
    (".residual.3.gamma", ".norm2.gamma"),
    (".residual.6.", ".conv2."),
    (".shortcut.", ".conv_shortcut."),
)
_BLOCK = re.compile(r"^(encoder|decoder)\.(downsamples|upsamples)\.(\d+)\.(?:downsamples|upsamples)\.(\d+)\.(.*)$")


def _rename_resnet(suffix: str) -> str:
    for old, new in _RESNET_PARTS:
        if suffix.startswith(old[1:]):
            return new[1:] + suffix[len(old) - 1 :]
    raise KeyError(suffix)


def release_key_to_diffusers(key: str) -> str:
    """Map one `Wan2.2_VAE.pth` key to its `AutoencoderKLWan` name (raises KeyError if unknown)."""
    top = {"conv1.weight": "quant_conv.weight", "conv1.bias": "quant_conv.bias",
           "conv2.weight": "post_quant_conv.weight", "conv2.bias": "post_quant_conv.bias"}
    if key in top:
        return top[key]
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        raise KeyError(key)
    if rest.startswith("conv1."):
        return f"{part}.conv_in.{rest[len('conv1.'):]}"
    if rest == "head.0.gamma":
        return f"{part}.norm_out.gamma"
    if rest.startswith("head.2."):
        return f"{part}.conv_out.{rest[len('head.2.'):]}"
    m = re.match(r"^middle\.(\d)\.(.*)$", rest)
    if m:
        idx, suffix = int(m.group(1)), m.group(2)
        if idx == 1:
            return f"{part}.mid_block.attentions.0.{suffix}"
        return f"{part}.mid_block.resnets.{idx // 2}.{_rename_resnet(suffix)}"
    m = _BLOCK.match(key)
    if m:
        _, kind, i, j, suffix = m.groups()
        blocks = "down_blocks" if kind == "downsamples" else "up_blocks"
        if suffix.startswith(("resample.", "time_conv.")):
            sampler = "downsampler" if kind == "downsamples" else "upsampler"
            return f"{part}.{blocks}.{i}.{sampler}.{suffix}"
        return f"{part}.{blocks}.{i}.resnets.{j}.{_rename_resnet(suffix)}"
    raise KeyError(key)


def convert_release_state_dict(state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> dict:
    """Rename a release state dict to diffusers names; unknown keys are an error naming the file."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        try:
            out[release_key_to_diffusers(key)] = value
        except KeyError:
            unknown.append(key)
    if unknown:
        raise VideoVAEError(f"{source}: not a Wan2.2 VAE file, unexpected keys {unknown[:8]} ({len(unknown)} in all)")
    return out


def _diffusers_to_release_map(model: torch.nn.Module) -> dict[str, str]:
    """Inverse key map built from a model (used by the tiny writer); checked against the forward map."""
    inv: dict[str, str] = {}
    for dkey in model.state_dict():
        rkey = _release_name_for(dkey, model)
        if release_key_to_diffusers(rkey) != dkey:
            raise AssertionError(f"key map is not invertible at {dkey} -> {rkey}")
        inv[dkey] = rkey
    return inv


def _release_name_for(dkey: str, model: torch.nn.Module) -> str:
    top = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
    head, _, rest = dkey.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    part = head
    if rest.startswith("conv_in."):
        return f"{part}.conv1.{rest[len('conv_in.'):]}"
    if rest == "norm_out.gamma":
        return f"{part}.head.0.gamma"
    if rest.startswith("conv_out."):
        return f"{part}.head.2.{rest[len('conv_out.'):]}"
    rev = {new[1:]: old[1:] for old, new in _RESNET_PARTS}

    def resnet(suffix: str) -> str:
        for new, old in rev.items():
            if suffix.startswith(new):
                return old + suffix[len(new):]
        raise KeyError(suffix)

    m = re.match(r"^mid_block\.(attentions|resnets)\.(\d)\.(.*)$", rest)
    if m:
        kind, idx, suffix = m.groups()
        if kind == "attentions":
            return f"{part}.middle.1.{suffix}"
        return f"{part}.middle.{2 * int(idx)}.{resnet(suffix)}"
    m = re.match(r"^(down_blocks|up_blocks)\.(\d+)\.(resnets\.(\d+)|downsampler|upsampler)\.(.*)$", rest)
    if m:
        blocks, i, what, j, suffix = m.groups()
        kind = "downsamples" if blocks == "down_blocks" else "upsamples"
        if j is None:
            n = len(getattr(getattr(model, part), blocks)[int(i)].resnets)
            return f"{part}.{kind}.{i}.{kind}.{n}.{suffix}"
        return f"{part}.{kind}.{i}.{kind}.{j}.{resnet(suffix)}"
    raise KeyError(dkey)


def infer_config(state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> WanVAEConfig:
    """Widths from tensor shapes: the release .pth carries no config."""
    try:
        base = state_dict["encoder.conv1.weight"].shape[0]
        dec = state_dict["decoder.conv1.weight"].shape[0] // 4  # decoder starts at dim * dim_mult[-1]
        z = state_dict["conv2.weight"].shape[0]
    except KeyError as e:
        raise VideoVAEError(f"{source}: not a Wan2.2 VAE file, missing key {e.args[0]!r}") from None
    return WanVAEConfig(base_dim=int(base), decoder_base_dim=int(dec), z_dim=int(z))


def _load_torch_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise VideoVAEError(f"{path}: file not found")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated / not a torch file
        raise VideoVAEError(f"{path}: cannot read as a torch state dict ({type(e).__name__}: {e})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise VideoVAEError(f"{path}: does not hold a tensor state dict")
    return sd


class VideoVAE:
    """DiT-space encode/decode around `AutoencoderKLWan`."""

    def __init__(self, model, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if model.dtype != dtype:  # diffusers warns on any dtype cast, so only cast when needed
            model = model.to(dtype=dtype)
        self.model = model.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.dtype = dtype
        z = model.config.z_dim
        self.mean = torch.tensor(model.config.latents_mean, dtype=torch.float32).view(z, 1, 1, 1)
        self.std = torch.tensor(model.config.latents_std, dtype=torch.float32).view(z, 1, 1, 1)

    # ---- loading -----------------------------------------------------------------------------
    @classmethod
    def from_release(cls, pth_path: str | Path, tiny: bool = False, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> "VideoVAE":
        """Load `Wan2.2_VAE.pth` strictly; widths are inferred, so tiny files take the same path.

        `tiny` only relaxes the release's key-count check (196 keys at any width, so it is kept as a
        documentation flag for callers; both sizes have 196 keys).
        """
        from diffusers import AutoencoderKLWan

        path = Path(pth_path)
        sd = _load_torch_file(path)
        if len(sd) != RELEASE_NUM_KEYS:
            raise VideoVAEError(f"{path}: expected {RELEASE_NUM_KEYS} keys of a Wan2.2 VAE, found {len(sd)}")
        cfg = infer_config(sd, str(path))
        converted = convert_release_state_dict(sd, str(path))
        with torch.device("meta"):
            model = AutoencoderKLWan(**cfg.diffusers_kwargs())
        require_state_dict(converted, expected_shapes(model), f"{path}: not a Wan2.2 VAE of {cfg}", VideoVAEError)
        model.load_state_dict(converted, strict=True, assign=True)
        logger.info("loaded Wan2.2 VAE %s (%s)", path, cfg)
        return cls(model.float(), device=device, dtype=dtype)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> "VideoVAE":
        """A diffusers folder (`config.json` + weights), or a pipeline folder with a `vae/` subfolder."""
        from diffusers import AutoencoderKLWan

        folder = Path(folder)
        sub = folder / "vae" if (folder / "vae" / "config.json").is_file() else folder
        if not (sub / "config.json").is_file():
            raise VideoVAEError(f"{folder}: no diffusers config.json (nor vae/config.json)")
        model = AutoencoderKLWan.from_pretrained(sub, torch_dtype=torch.float32)
        if model.config.z_dim != 48 or not model.config.is_residual:
            raise VideoVAEError(f"{sub}: not a Wan2.2 VAE (z_dim {model.config.z_dim}, is_residual "
                                f"{model.config.is_residual})")
        return cls(model, device=device, dtype=dtype)

    # ---- latent space ------------------------------------------------------------------------
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """VAE mean latents -> DiT space."""
        return (z.float() - self.mean.to(z.device)) / self.std.to(z.device)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """DiT space -> what diffusers' decoder expects (z * std + mean)."""
        return z.float() * self.std.to(z.device) + self.mean.to(z.device)

    def _autocast(self, precision: str):
        """The release runs its VAE under bf16 autocast with fp32 weights (precision "nava"); "fp32" runs
        it in full precision."""
        if precision not in ("nava", "fp32"):
            raise ValueError(f"precision must be 'nava' or 'fp32', got {precision!r}")
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "nava")

    def _decode_denormalized(self, z: torch.Tensor, precision: str) -> torch.Tensor:
        """[1,48,T,h,w] VAE-space latents -> [1,3,F,H,W] float32, clamped per call to [-1, 1]."""
        self.model.disable_tiling()
        with self._autocast(precision):
            out = self.model.decode(z.to(self.device, self.dtype), return_dict=False)[0]
        return out.float().clamp(-1.0, 1.0)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, tiled: bool = False, precision: str = "fp32",
               tile: tuple[int, int] = TILE_LATENTS, stride: tuple[int, int] = TILE_STRIDE_LATENTS) -> torch.Tensor:
        """[48,T,h,w] DiT latents -> [4T-3,3,H,W] frames in [-1,1].

        `tiled` decodes spatial tiles as the release's Wan VAE does (`tiled_decode`, NAVA_SPEC.md 6).
        """
        if latents.ndim != 4 or latents.shape[0] != self.model.config.z_dim:
            raise ValueError(f"latents must be [{self.model.config.z_dim},T,h,w], got {tuple(latents.shape)}")
        z = self.denormalize(latents).unsqueeze(0)
        if tiled:
            video = self._tiled_decode(z, tile, stride, precision)
        else:
            video = self._decode_denormalized(z, precision)
        video = video[0].permute(1, 0, 2, 3).contiguous()
        expected = pixel_frames(latents.shape[1])
        if video.shape[0] != expected:
            raise RuntimeError(f"decoder made {video.shape[0]} frames, expected {expected}")
        return video.cpu()

    def _tiled_decode(self, z: torch.Tensor, tile: tuple[int, int], stride: tuple[int, int],
                      precision: str) -> torch.Tensor:
        """Wan's spatial tiling: tiles of `tile` latents every `stride`, each decoded alone and clamped,
        blended on the CPU with a mask that ramps linearly over the overlap on every inner edge
        (min of the row and column ramps), divided by the summed mask, clamped again."""
        _, _, t, h, w = z.shape
        up = VAE_SPATIAL_STRIDE
        border = ((tile[0] - stride[0]) * up, (tile[1] - stride[1]) * up)
        values = torch.zeros((1, 3, pixel_frames(t), h * up, w * up), dtype=torch.float32)
        weight = torch.zeros((1, 1, pixel_frames(t), h * up, w * up), dtype=torch.float32)
        for h0, h1, w0, w1 in tile_spans(h, w, tile, stride):
            decoded = self._decode_denormalized(z[:, :, :, h0:h1, w0:w1], precision).cpu()
            mask = blend_mask(decoded.shape[3], decoded.shape[4], (h0 == 0, h1 >= h, w0 == 0, w1 >= w), border)
            ph, pw = h0 * up, w0 * up
            values[:, :, :, ph:ph + decoded.shape[3], pw:pw + decoded.shape[4]] += decoded * mask
            weight[:, :, :, ph:ph + decoded.shape[3], pw:pw + decoded.shape[4]] += mask
        return (values / weight).clamp(-1.0, 1.0)

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """[F,3,H,W] in [-1,1] (F = 4T-3) -> [48,T,h,w] DiT latents (posterior mean)."""
        x = video.permute(1, 0, 2, 3).unsqueeze(0).to(self.device, self.dtype)
        with self._autocast(precision):
            mu = self.model.encode(x).latent_dist.mode()
        return self.normalize(mu[0].float().cpu())

    def encode_image(self, image: Image.Image | np.ndarray, resolution: Resolution, precision: str = "fp32") -> torch.Tensor:
        """First frame for image-to-video: resize to cover, centre crop, encode -> [48,1,h,w] normalised."""
        frame = prepare_image(image, resolution)
        return self.encode_video(frame.unsqueeze(0), precision)


def prepare_image(image: Image.Image | np.ndarray, resolution: Resolution) -> torch.Tensor:
    """Resize so the image covers the bucket (aspect kept), centre-crop, map to [-1,1]: [3,H,W]."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(arr)
    image = image.convert("RGB")
    w, h = image.size
    tw, th = resolution.width, resolution.height
    scale = max(tw / w, th / h)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.LANCZOS)
    left, top = (nw - tw) // 2, (nh - th) // 2
    image = image.crop((left, top, left + tw, top + th))
    arr = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())
    return (arr / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def tile_spans(h: int, w: int, tile: tuple[int, int] = TILE_LATENTS,
               stride: tuple[int, int] = TILE_STRIDE_LATENTS) -> list[tuple[int, int, int, int]]:
    """(h0, h1, w0, w1) latent ranges of Wan's tiles: a tile every `stride`, cut at the edge, and no
    tile whose predecessor already reached the edge."""
    spans = []
    for h0 in range(0, h, stride[0]):
        if h0 - stride[0] >= 0 and h0 - stride[0] + tile[0] >= h:
            continue
        for w0 in range(0, w, stride[1]):
            if w0 - stride[1] >= 0 and w0 - stride[1] + tile[1] >= w:
                continue
            spans.append((h0, min(h0 + tile[0], h), w0, min(w0 + tile[1], w)))
    return spans


def _ramp(length: int, first: bool, last: bool, border: int) -> torch.Tensor:
    x = torch.ones(length)
    if border <= 0:  # tiles that do not overlap: nothing to blend
        return x
    ramp = (torch.arange(border) + 1) / border
    if not first:
        x[:border] = ramp
    if not last:
        x[-border:] = ramp.flip(0)
    return x


def blend_mask(height: int, width: int, bounds: tuple[bool, bool, bool, bool],
               border: tuple[int, int]) -> torch.Tensor:
    """[1,1,1,H,W] weights of one decoded tile: 1 inside, a linear ramp (1/b .. 1) over `border` pixels
    on each edge that is not a frame edge (`bounds` = top, bottom, left, right are frame edges)."""
    rows = _ramp(height, bounds[0], bounds[1], border[0])[:, None].expand(height, width)
    cols = _ramp(width, bounds[2], bounds[3], border[1])[None, :].expand(height, width)
    return torch.minimum(rows, cols)[None, None, None]


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[F,3,H,W] in [-1,1] -> uint8 [F,H,W,3], truncating ((x+1)/2*255) as the release does."""
    x = ((video.float().clamp(-1, 1) + 1.0) / 2 * 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def write_tiny_video_vae(path: str | Path, seed: int = 0, base_dim: int = 8,
                         decoder_base_dim: int = 8) -> Path:
    """A seeded random `Wan2.2_VAE.pth` with the release's 196 key names, z_dim 48 and strides."""
    from diffusers import AutoencoderKLWan

    path = Path(path)
    if path.suffix != ".pth":
        path = path / "Wan2.2_VAE.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = AutoencoderKLWan(**WanVAEConfig(base_dim, decoder_base_dim, 48).diffusers_kwargs())
    inv = _diffusers_to_release_map(model)
    sd = {}
    gen = torch.Generator().manual_seed(seed)
    for k, v in model.state_dict().items():
        if k.endswith("gamma"):
            t = 1.0 + 0.1 * torch.randn(v.shape, generator=gen)
        elif v.ndim >= 2:
            fan_in = v[0].numel()
            t = torch.randn(v.shape, generator=gen) / fan_in**0.5
            if k.startswith("decoder.conv_out."):
                t = 0.25 * t  # keep random pixels mostly inside [-1, 1], like a trained decoder's
        else:
            t = 0.02 * torch.randn(v.shape, generator=gen)
        sd[inv[k]] = t.float().contiguous()
    tmp = path.with_suffix(".pth.tmp")
    torch.save(sd, tmp)
    tmp.replace(path)
    return path


__all__ = [
    "VideoVAE", "VideoVAEError", "WanVAEConfig", "WAN22_LATENTS_MEAN", "WAN22_LATENTS_STD",
    "release_key_to_diffusers", "convert_release_state_dict", "infer_config", "prepare_image",
    "to_uint8_frames", "write_tiny_video_vae", "tile_spans", "blend_mask",
]
