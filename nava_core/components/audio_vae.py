"""LTX-2.3 audio VAE + BWE vocoder (diffusers classes) loaded from the release's single safetensors.

Why here: the release stores both models in one file with LTX's own key names and its config in the
safetensors metadata; the DiT works on normalised latents packed as [L, 128] (feature = c*16 + f).
This module owns that packing, the per-channel (de)normalisation, the mel front end for encode, and
the 48 kHz -> 16 kHz step the release applies before muxing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from nava_core.components.resample import resample
from nava_core.components.mel import causal_log_mel, hann_dft_basis, lowpass_decimate, mel_filterbank
from nava_core.config import AUDIO_MEL_RATE, AUDIO_VOCODER_RATE
from nava_core.statedict import expected_shapes, require_state_dict

logger = logging.getLogger(__name__)

_VAE_PREFIXES = ("audio_vae.encoder.", "audio_vae.decoder.")
_STATS = "audio_vae.per_channel_statistics."
_STATS_MAP = {"mean-of-means": "latents_mean", "std-of-means": "latents_std"}
_STATS_UNUSED = ("channel", "mean-of-stds")  # present in LTX files, not used by decode/encode
_VOCODER = "vocoder."
# LTX -> diffusers vocoder names (diffusers' LTX-2.3 conversion rules).
_VOC_RULES = (("resblocks", "resnets"), ("conv_pre", "conv_in"), ("conv_post", "conv_out"),
              ("act_post", "act_out"), ("downsample.lowpass", "downsample"), (".ups.", ".upsamplers."))


class AudioVAEError(ValueError):
    """An audio VAE file that cannot be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class AudioVAEConfigs:
    """diffusers constructor kwargs read from the file's `config` metadata."""

    audio_vae: dict
    vocoder: dict


def _voc_to_diffusers(key: str) -> str:
    key = "." + key
    for old, new in _VOC_RULES:
        key = key.replace(old, new)
    return key[1:]


def _voc_to_release(key: str) -> str:
    key = "." + key
    for old, new in reversed(_VOC_RULES):
        key = key.replace(new if new != "downsample" else ".downsample.", old if new != "downsample" else ".downsample.lowpass.")
    return key[1:]


def configs_from_metadata(meta: dict, source: str = "<metadata>") -> AudioVAEConfigs:
    """Map LTX's `config` metadata ({audio_vae: {model: {params: {ddconfig...}}}, vocoder: {vocoder, bwe}})."""
    try:
        cfg = json.loads(meta["config"])
        params = cfg["audio_vae"]["model"]["params"]
        dd = params["ddconfig"]
        voc, bwe = cfg["vocoder"]["vocoder"], cfg["vocoder"]["bwe"]
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise AudioVAEError(f"{source}: safetensors metadata lacks the LTX audio config ({e!r}); expected "
                            "'config' JSON with audio_vae.model.params.ddconfig and vocoder.{vocoder,bwe}") from None
    mel_bins = int(dd.get("mel_bins", 64))
    vae = dict(
        base_channels=dd["ch"], output_channels=dd["out_ch"], ch_mult=tuple(dd["ch_mult"]),
        num_res_blocks=dd["num_res_blocks"], attn_resolutions=tuple(dd.get("attn_resolutions") or ()) or None,
        in_channels=dd["in_channels"], resolution=dd.get("resolution", 256), latent_channels=dd["z_channels"],
        norm_type=dd.get("norm_type", "pixel"), causality_axis=dd.get("causality_axis", "height"),
        dropout=dd.get("dropout", 0.0), mid_block_add_attention=dd.get("mid_block_add_attention", False),
        sample_rate=params.get("sampling_rate", AUDIO_MEL_RATE), mel_hop_length=params.get("mel_hop_length", 160),
        is_causal=params.get("is_causal", True), mel_bins=mel_bins, double_z=dd.get("double_z", True),
    )
    channels = 2 if voc.get("stereo", True) else 1

    def gen(c: dict, prefix: str) -> dict:
        return {
            f"{prefix}in_channels": mel_bins * channels if prefix == "" else c.get("num_mels", mel_bins) * channels,
            f"{prefix}hidden_channels": c["upsample_initial_channel"],
            f"{prefix}out_channels": 2 if c.get("stereo", True) else 1,
            f"{prefix}upsample_kernel_sizes": list(c["upsample_kernel_sizes"]),
            f"{prefix}upsample_factors": list(c["upsample_rates"]),
            f"{prefix}resnet_kernel_sizes": list(c["resblock_kernel_sizes"]),
            f"{prefix}resnet_dilations": [list(d) for d in c["resblock_dilation_sizes"]],
            f"{prefix}act_fn": c.get("activation", "snakebeta"),
            f"{prefix}final_act_fn": "tanh" if c.get("use_tanh_at_final", False) else None,
            f"{prefix}final_bias": bool(c.get("use_bias_at_final", False)),
        }

    vocoder = {**gen(voc, ""), **gen(bwe, "bwe_")}
    vocoder.update(filter_length=bwe.get("n_fft", 512), hop_length=bwe.get("hop_length", 80),
                   window_length=bwe.get("win_size", 512), num_mel_channels=bwe.get("num_mels", 64),
                   input_sampling_rate=bwe.get("input_sampling_rate", AUDIO_MEL_RATE),
                   output_sampling_rate=bwe.get("output_sampling_rate", AUDIO_VOCODER_RATE))
    return AudioVAEConfigs(vae, vocoder)


def split_release_state_dict(sd: dict[str, torch.Tensor], source: str = "<state dict>") -> tuple[dict, dict]:
    """Release keys -> (AutoencoderKLLTX2Audio state dict, LTX2VocoderWithBWE state dict)."""
    vae, voc, unknown = {}, {}, []
    for k, v in sd.items():
        if k.startswith(_VAE_PREFIXES):
            vae[k[len("audio_vae."):]] = v
        elif k.startswith(_STATS):
            name = k[len(_STATS):]
            if name in _STATS_MAP:
                vae[_STATS_MAP[name]] = v
            elif name not in _STATS_UNUSED:
                unknown.append(k)
        elif k.startswith(_VOCODER):
            voc[_voc_to_diffusers(k[len(_VOCODER):])] = v
        else:
            unknown.append(k)
    if unknown:
        raise AudioVAEError(f"{source}: unexpected keys {unknown[:8]} ({len(unknown)} in all)")
    return vae, voc


def _strict_load(model: torch.nn.Module, sd: dict, what: str, source: str) -> None:
    require_state_dict(sd, expected_shapes(model), f"{source}: {what} keys do not match the metadata config",
                       AudioVAEError)
    model.load_state_dict(sd, strict=True, assign=True)


def pack_latents(z: torch.Tensor) -> torch.Tensor:
    """[8, L, 16] -> [L, 128] with feature = c*16 + f."""
    c, length, f = z.shape
    return z.permute(1, 0, 2).reshape(length, c * f)


def unpack_latents(x: torch.Tensor, channels: int = 8) -> torch.Tensor:
    """[L, 128] -> [8, L, 16] (inverse of pack_latents)."""
    length, feat = x.shape
    return x.reshape(length, channels, feat // channels).permute(1, 0, 2).contiguous()


def resample_48k_to_16k(wave: torch.Tensor) -> torch.Tensor:
    """[C, N] 48 kHz -> [C, ceil(N/3)] 16 kHz with the release's resampler (torchaudio's default)."""
    return resample(wave, AUDIO_VOCODER_RATE, AUDIO_MEL_RATE)


class AudioVAE:
    """Normalised [L,128] latents <-> stereo waveform."""

    def __init__(self, vae, vocoder, device: str | torch.device = "cpu") -> None:
        self.vae = vae.float().to(device).eval().requires_grad_(False)
        self.vocoder = vocoder.float().to(device).eval().requires_grad_(False)
        self.device = torch.device(device)

    @classmethod
    def from_release(cls, safetensors_path: str | Path, device: str | torch.device = "cpu") -> "AudioVAE":
        """Load `ltx-2.3-22b-dev_audio_vae.safetensors` strictly, configs from its metadata."""
        from diffusers import AutoencoderKLLTX2Audio
        from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE
        from safetensors import safe_open

        path = Path(safetensors_path)
        if not path.is_file():
            raise AudioVAEError(f"{path}: file not found")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise AudioVAEError(f"{path}: cannot read as safetensors ({type(e).__name__}: {e})") from None
        cfgs = configs_from_metadata(meta, str(path))
        vae_sd, voc_sd = split_release_state_dict(sd, str(path))
        # Built on CPU, not meta: the vocoder has non-persistent buffers (resampler filters) it computes.
        vae = AutoencoderKLLTX2Audio(**cfgs.audio_vae)
        voc = LTX2VocoderWithBWE(**cfgs.vocoder)
        _strict_load(vae, vae_sd, "audio VAE", str(path))
        _strict_load(voc, voc_sd, "vocoder", str(path))
        logger.info("loaded LTX audio VAE + vocoder from %s", path)
        return cls(vae, voc, device)

    # ---- normalisation in packed space ---------------------------------------------------------
    def normalize(self, packed: torch.Tensor) -> torch.Tensor:
        return (packed.float() - self.vae.latents_mean.float().cpu()) / self.vae.latents_std.float().cpu()

    def denormalize(self, packed: torch.Tensor) -> torch.Tensor:
        return packed.float() * self.vae.latents_std.float().cpu() + self.vae.latents_mean.float().cpu()

    @torch.no_grad()
    def decode_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """[L,128] normalised -> [2, 4L-3, 64] log-mel."""
        z = unpack_latents(self.denormalize(latents), self.vae.config.latent_channels)
        return self.vae.decode(z.unsqueeze(0).to(self.device), return_dict=False)[0][0].float().cpu()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, sample_rate: int = AUDIO_MEL_RATE) -> torch.Tensor:
        """[L,128] normalised -> [2, 160*(4L-3)*sr/16000] float32 at 16 kHz (release) or 48 kHz (vocoder)."""
        if sample_rate not in (AUDIO_MEL_RATE, AUDIO_VOCODER_RATE):
            raise ValueError(f"sample_rate must be {AUDIO_MEL_RATE} or {AUDIO_VOCODER_RATE}, got {sample_rate}")
        if latents.ndim != 2 or latents.shape[1] != self.vae.latents_mean.numel():
            raise ValueError(f"latents must be [L, {self.vae.latents_mean.numel()}], got {tuple(latents.shape)}")
        mel = self.decode_mel(latents)
        wave = self.vocoder(mel.unsqueeze(0).to(self.device))[0].float().cpu()
        rate = self.vocoder.config.output_sampling_rate
        if sample_rate == rate:
            return wave
        return resample(wave, rate, sample_rate)  # the release's 48 -> 16 kHz step (NAVA_SPEC.md 6)

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor, sample_rate: int = AUDIO_MEL_RATE) -> torch.Tensor:
        """[2, N] waveform -> [L, 128] normalised latents (posterior mean)."""
        wave = waveform.float()
        if wave.ndim == 1:
            wave = wave[None]
        if wave.shape[0] == 1:
            wave = wave.expand(2, -1)
        if sample_rate != AUDIO_MEL_RATE:
            if sample_rate % AUDIO_MEL_RATE:
                raise ValueError(f"encode takes 16 kHz or a multiple of it, got {sample_rate}")
            wave = lowpass_decimate(wave, sample_rate // AUDIO_MEL_RATE)
        mel = causal_log_mel(wave, AUDIO_MEL_RATE, hop=self.vae.config.mel_hop_length,
                             n_mels=self.vae.config.mel_bins)
        z = self.vae.encode(mel.unsqueeze(0).to(self.device)).latent_dist.mode()[0].float().cpu()
        return self.normalize(pack_latents(z))


def tiny_metadata() -> dict:
    """LTX-style `config` metadata for a small model with the release's strides and mel layout.

    `ch` stays 128: the per-channel statistics are sized by it and must match the 128 packed features.
    """
    dd = {"double_z": True, "mel_bins": 64, "z_channels": 8, "resolution": 256, "in_channels": 2, "out_ch": 2,
          "ch": 128, "ch_mult": [1, 1, 1], "num_res_blocks": 1, "dropout": 0.0, "mid_block_add_attention": False,
          "norm_type": "pixel", "causality_axis": "height"}
    voc = {"upsample_initial_channel": 64, "resblock": "AMP1", "upsample_rates": [5, 2, 2, 2, 2, 2],
           "resblock_kernel_sizes": [3], "upsample_kernel_sizes": [11, 4, 4, 4, 4, 4],
           "resblock_dilation_sizes": [[1, 3]], "stereo": True, "use_tanh_at_final": False,
           "activation": "snakebeta", "use_bias_at_final": False}
    bwe = {"upsample_initial_channel": 32, "resblock": "AMP1", "upsample_rates": [6, 5, 2, 2, 2],
           "resblock_kernel_sizes": [3], "upsample_kernel_sizes": [12, 11, 4, 4, 4],
           "resblock_dilation_sizes": [[1, 3]], "stereo": True, "use_tanh_at_final": False,
           "activation": "snakebeta", "use_bias_at_final": False, "apply_final_activation": False,
           "input_sampling_rate": 16000, "output_sampling_rate": 48000, "hop_length": 80, "n_fft": 512,
           "win_size": 512, "num_mels": 64}
    cfg = {"audio_vae": {"model": {"params": {"ddconfig": dd, "sampling_rate": 16000}}},
           "vocoder": {"vocoder": voc, "bwe": bwe}}
    return {"config": json.dumps(cfg), "model_version": "2.3.0"}


def write_tiny_audio_vae(path: str | Path, seed: int = 0) -> Path:
    """A seeded random `ltx-2.3-22b-dev_audio_vae.safetensors` in the release's key layout + metadata."""
    from diffusers import AutoencoderKLLTX2Audio
    from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / "ltx-2.3-22b-dev_audio_vae.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = tiny_metadata()
    cfgs = configs_from_metadata(meta)
    torch.manual_seed(seed)
    vae = AutoencoderKLLTX2Audio(**cfgs.audio_vae)
    voc = LTX2VocoderWithBWE(**cfgs.vocoder)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    inv_stats = {v: k for k, v in _STATS_MAP.items()}
    for k, v in vae.state_dict().items():
        if k in inv_stats:
            t = 0.1 * torch.randn(v.shape, generator=gen) if k == "latents_mean" else 0.5 + torch.rand(v.shape, generator=gen)
            out[_STATS + inv_stats[k]] = t
        else:
            out["audio_vae." + k] = v.detach().clone()
    n_fft, win = cfgs.vocoder["filter_length"], cfgs.vocoder["window_length"]
    for k, v in voc.state_dict().items():
        if k.endswith("mel_stft.mel_basis"):
            t = mel_filterbank(cfgs.vocoder["input_sampling_rate"] * 3, n_fft, cfgs.vocoder["num_mel_channels"])
        elif k.endswith("forward_basis") or k.endswith("inverse_basis"):
            t = hann_dft_basis(n_fft, win)
        else:
            t = v.detach().clone()
        out[_VOCODER + _voc_to_release(k)] = t.float().contiguous()
    save_file(out, str(path), metadata=meta)
    return path


__all__ = [
    "AudioVAE", "AudioVAEError", "AudioVAEConfigs", "configs_from_metadata", "split_release_state_dict",
    "pack_latents", "unpack_latents", "resample_48k_to_16k", "write_tiny_audio_vae",
]
