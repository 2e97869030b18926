"""Which attention kernel the backbone uses on a device, decided once per engine and recorded.

Why probing and not `find_spec`: a flash-attn wheel built for another torch/CUDA is importable by name
but fails (or crashes) at import or first call; forcing it would break a render that SDPA runs fine.
Each candidate here is *imported* (and cuDNN attention is *called* once on a tiny tensor) before it is
chosen. The order follows what is fastest at NAVA's shapes (head dim 128, ~32k joint tokens):

- Hopper/Blackwell (compute capability >= 9): FlashAttention-3 (`flash_attn_interface`, Hopper only),
  then cuDNN attention (PyTorch SDPA's cuDNN kernel), then FlashAttention-2, then SDPA.
- Ampere/Ada: FlashAttention-2, then SDPA.
- CPU / anything else: SDPA (PyTorch picks its own kernel).

Half-precision kernels need bf16/fp16 inputs: under the fp32 policy every call uses SDPA. Calls that
carry a key mask (a batch with real padding) use the kernel's varlen form where it has one, else SDPA.
An explicit choice (`--attention`, `NAVAPipeline.from_pretrained(attention=...)`) that cannot run here
is refused with the reason instead of silently replaced.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

# user-facing name -> (diffusers backend without mask, diffusers backend with a key mask)
_DISPATCH: dict[str, tuple[str, str]] = {
    "sdpa": ("native", "native"),
    "cudnn": ("_native_cudnn", "native"),
    "flash3": ("_flash_3", "_flash_varlen_3"),
    "flash": ("flash", "flash_varlen"),
}
ATTENTION_BACKENDS: tuple[str, ...] = ("auto", *_DISPATCH)
_HALF = (torch.float16, torch.bfloat16)


class AttentionBackendError(ValueError):
    """An attention backend was asked for that this machine cannot run (the message says why)."""


@dataclass(frozen=True)
class AttentionChoice:
    """The resolved backend of one engine: what runs, and why (shown in logs, results and the bench)."""

    name: str  # one of ATTENTION_BACKENDS minus "auto"
    reason: str
    device: str

    @property
    def dense(self) -> str:
        return _DISPATCH[self.name][0]

    @property
    def masked(self) -> str:
        return _DISPATCH[self.name][1]

    def dispatch_name(self, query: torch.Tensor, masked: bool) -> str:
        """diffusers backend for one call: half-precision kernels only for half-precision inputs."""
        if self.name == "sdpa" or query.dtype not in _HALF or not query.is_cuda:
            return "native"
        return self.masked if masked else self.dense


def _capability(device: torch.device) -> tuple[int, int] | None:
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(device)


def _diffusers_accepts(flag: str, what: str) -> str | None:
    """diffusers dispatches to a kernel only when its own availability check passed at import."""
    from diffusers.models import attention_dispatch

    if not getattr(attention_dispatch, flag, False):
        return f"{what} imports, but diffusers' dispatcher does not accept this build (version check)"
    return None


def probe(name: str, device: torch.device) -> str | None:
    """None when backend `name` runs on `device`; else a sentence saying why not."""
    if name == "sdpa":
        return None
    cap = _capability(device)
    if cap is None:
        return f"'{name}' attention needs a CUDA GPU (this device is {device})"
    if name == "flash":
        if cap < (8, 0):
            return f"FlashAttention-2 needs compute capability >= 8.0 (this GPU is {cap[0]}.{cap[1]})"
        try:
            mod = importlib.import_module("flash_attn")
            getattr(mod, "flash_attn_func")
            getattr(mod, "flash_attn_varlen_func")
        except Exception as e:  # noqa: BLE001 - any import failure means "not usable here"
            return f"flash_attn does not import here ({type(e).__name__}: {e})"
        return _diffusers_accepts("_CAN_USE_FLASH_ATTN", "flash_attn")
    if name == "flash3":
        if cap[0] != 9:
            return f"FlashAttention-3 runs on Hopper (compute capability 9.x); this GPU is {cap[0]}.{cap[1]}"
        try:
            mod = importlib.import_module("flash_attn_interface")
            getattr(mod, "flash_attn_func")
        except Exception as e:  # noqa: BLE001
            return f"flash_attn_interface (FlashAttention-3) does not import here ({type(e).__name__}: {e})"
        return _diffusers_accepts("_CAN_USE_FLASH_ATTN_3", "FlashAttention-3")
    if name == "cudnn":
        if cap < (9, 0):
            return f"cuDNN attention is chosen on Hopper or newer (this GPU is {cap[0]}.{cap[1]})"
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            q = torch.zeros(1, 2, 64, 128, device=device, dtype=torch.bfloat16)
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
            torch.cuda.synchronize(device)
        except Exception as e:  # noqa: BLE001
            return f"cuDNN attention does not run here ({type(e).__name__}: {e})"
        return None
    raise AttentionBackendError(f"unknown attention backend {name!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")


def auto_order(device: torch.device) -> list[str]:
    """Candidates for 'auto', fastest first, for this device."""
    cap = _capability(device)
    if cap is None:
        return ["sdpa"]
    if cap >= (9, 0):
        return ["flash3", "cudnn", "flash", "sdpa"]
    return ["flash", "sdpa"]


def choose_attention(requested: str | None, device: torch.device | str) -> AttentionChoice:
    """Resolve 'auto' (or None) to the fastest backend that imports and runs here; check an explicit one."""
    device = torch.device(device)
    name = (requested or "auto").strip().lower()
    if name not in ATTENTION_BACKENDS:
        raise AttentionBackendError(
            f"unknown attention backend {requested!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")
    if name != "auto":
        why = probe(name, device)
        if why is not None:
            raise AttentionBackendError(f"attention backend '{name}' cannot run here: {why}. "
                                        "Use --attention auto (or sdpa) instead.")
        return AttentionChoice(name, "requested", str(device))
    skipped = []
    for cand in auto_order(device):
        why = probe(cand, device)
        if why is None:
            reason = "auto: fastest available" + (f" (skipped: {'; '.join(skipped)})" if skipped else "")
            choice = AttentionChoice(cand, reason, str(device))
            logger.info("attention backend %s on %s (%s)", cand, device, reason)
            return choice
        skipped.append(f"{cand}: {why}")
    raise AssertionError("sdpa always probes as available")  # pragma: no cover


SDPA = AttentionChoice("sdpa", "default", "any")

__all__ = ["ATTENTION_BACKENDS", "AttentionBackendError", "AttentionChoice", "SDPA", "auto_order",
           "choose_attention", "probe"]
