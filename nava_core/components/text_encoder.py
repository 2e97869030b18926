"""umT5 text encoder and NAVA's prompt preparation.

NAVA conditions on umT5-XXL's encoder output, trimmed to the prompt's real length (EOS included); the
backbone zero-pads it to 512 itself (NAVA_SPEC.md section 4). Speakers are bound by position: the
release rewrites every `<S>` to `<S><extra_id_2>` and the i-th `<extra_id_2>` row of the context later
receives the i-th voice embedding. This module reproduces those facts on transformers'
`UMT5EncoderModel`, loads the release's own `.pth` (Wan's T5 key layout, converted by key map) or a
transformers folder, and reports prompts that the release would silently truncate at 512 tokens.

Facts from the release (`nava_src/models/nava/modules/t5.py`, Wan's tokenizer wrapper):
- cleaning is ftfy `fix_text`, HTML unescaping (twice), strip, whitespace runs -> one space;
- the tokenizer is called with special tokens, so an EOS closes every prompt; the context length is
  the attention-mask sum, which counts that EOS;
- speaker positions are the indices of the `<extra_id_2>` id inside that length; the id is the first
  id of tokenising `"<extra_id_2>"` alone;
- the encoder is umT5-XXL with a relative-position bias in every layer (`shared_pos=False`), run in bf16.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nava_core.statedict import require_state_dict
from prompt_builder.text import SPAN_RE  # the prompt format's one span rule

logger = logging.getLogger(__name__)

SPEAKER_TOKEN = "<extra_id_2>"
TEXT_LEN = 512
RELEASE_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_DIR = "tokenizer"
UMT5_XXL_VOCAB = 256384

_S_WITHOUT_SPEAKER_RE = re.compile(r"<S>(?!" + re.escape(SPEAKER_TOKEN) + ")")


# --------------------------------------------------------------------------------------------- errors


class TextEncoderLoadError(RuntimeError):
    """A text-encoder file or folder that cannot be loaded; the message names it and says why."""


@dataclass(frozen=True)
class SpanBeyond:
    """A `<S>...<E>` span (0-based `index` in the prompt) that reaches past the 512-token limit."""

    index: int
    text: str
    first_token: int
    last_token: int

    @property
    def fully_beyond(self) -> bool:
        return self.first_token >= TEXT_LEN - 1


class PromptTooLongError(ValueError):
    """The prompt needs more than 512 umT5 tokens; the release would cut it without a word.

    `num_tokens` counts the EOS; `spans_beyond` lists the spoken lines that would be lost or cut.
    """

    def __init__(self, num_tokens: int, spans_beyond: list[SpanBeyond], max_tokens: int = TEXT_LEN):
        self.num_tokens = num_tokens
        self.max_tokens = max_tokens
        self.spans_beyond = list(spans_beyond)
        over = num_tokens - max_tokens
        msg = f"The prompt is {num_tokens} umT5 tokens long; NAVA reads at most {max_tokens} ({over} too many)."
        if self.spans_beyond:
            parts = []
            for span in self.spans_beyond:
                how = "entirely" if span.fully_beyond else "partly"
                preview = span.text if len(span.text) <= 40 else span.text[:37] + "..."
                parts.append(f"line {span.index + 1} <S>{preview}<E> ({how})")
            msg += " Spoken lines beyond the limit: " + "; ".join(parts) + "."
        else:
            msg += " No spoken line is affected, but the end of the description would be dropped."
        self.problem = msg
        msg += " Shorten the scene or audio description, or split the dialogue across clips."
        super().__init__(msg)

    def truncation_warning(self) -> str:
        """What a render truncated as the release does loses (for the CLI's and the studio's warnings)."""
        return (f"{self.problem} Rendered truncated as the release does: only the first {self.max_tokens - 1} "
                "tokens (plus the end marker) were used.")


# ------------------------------------------------------------------------------------ prompt preparation


def clean_prompt(text: str) -> str:
    """The release's 'whitespace' cleaning: ftfy, double HTML unescape, strip, collapse whitespace."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # ftfy is in requirements; without it only full-width/quote fixes are lost
        logger.warning("ftfy is not installed: prompt cleaning skips ftfy.fix_text")
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def prepare_prompt(text: str) -> str:
    """Mark every speech span for speaker injection, then clean the text: the release's order.

    Every `<S>` of the raw prompt becomes `<S><extra_id_2>` before ftfy/HTML-unescape/whitespace
    cleaning, so an escaped `&lt;S&gt;` turns into a plain `<S>` without a speaker slot, as in the
    release. An `<S>` already followed by the marker is left alone, so preparing twice gives the same
    text (the release's plain `replace` would double it; the only place this project differs).
    """
    return clean_prompt(_S_WITHOUT_SPEAKER_RE.sub("<S>" + SPEAKER_TOKEN, text))


def speech_spans(text: str) -> list[tuple[int, int, str]]:
    """`(start, end, line)` character ranges of the `<S>...<E>` spans, in order."""
    return [(m.start(), m.end(), m.group(1)) for m in SPAN_RE.finditer(text)]


# ------------------------------------------------------------------------------- configs and key maps


def umt5_xxl_config():
    """umT5-XXL encoder as the release builds it (t5.py `umt5_xxl`: vocab 256384, dim 4096, ffn 10240,
    64 heads of 64, 24 layers, 32 buckets, max distance 128, tanh-GELU gated FFN, eps 1e-6)."""
    return _umt5_config(vocab=UMT5_XXL_VOCAB, d_model=4096, d_kv=64, heads=64, d_ff=10240, layers=24)


def _umt5_config(vocab: int, d_model: int, d_kv: int, heads: int, d_ff: int, layers: int, buckets: int = 32):
    from transformers import UMT5Config

    return UMT5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=d_kv,
        num_heads=heads,
        d_ff=d_ff,
        num_layers=layers,
        num_decoder_layers=layers,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def release_key_shapes(config) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of Wan's T5 encoder state dict for a given UMT5 config."""
    d, inner, ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    shapes: dict[str, tuple[int, ...]] = {"token_embedding.weight": (config.vocab_size, d), "norm.weight": (d,)}
    for i in range(config.num_layers):
        b = f"blocks.{i}."
        shapes.update(
            {
                b + "norm1.weight": (d,),
                b + "attn.q.weight": (inner, d),
                b + "attn.k.weight": (inner, d),
                b + "attn.v.weight": (inner, d),
                b + "attn.o.weight": (d, inner),
                b + "norm2.weight": (d,),
                b + "ffn.gate.0.weight": (ff, d),
                b + "ffn.fc1.weight": (ff, d),
                b + "ffn.fc2.weight": (d, ff),
                b + "pos_embedding.embedding.weight": (config.relative_attention_num_buckets, config.num_heads),
            }
        )
    return shapes


_BLOCK_MAP = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_BLOCK_RE = re.compile(r"blocks\.(\d+)\.(.+)")


def release_to_transformers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan T5 keys -> `UMT5EncoderModel` keys (NAVA_SPEC.md section 9). The embedding feeds both the
    shared table and `encoder.embed_tokens` (the same tensor). Unknown keys raise KeyError."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = value
            out["encoder.embed_tokens.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        elif (m := _BLOCK_RE.fullmatch(key)) and m.group(2) in _BLOCK_MAP:
            out[f"encoder.block.{m.group(1)}.{_BLOCK_MAP[m.group(2)]}"] = value
        else:
            raise KeyError(key)
    return out


def config_from_release_state_dict(state_dict: dict[str, torch.Tensor], source: str = "checkpoint"):
    """Read the encoder's sizes off the tensors, so the release file and tiny files share one path.

    A file with umT5-XXL's vocabulary and width is held to the full umT5-XXL config, so a missing
    block is reported rather than read as a shallower model.
    """
    emb = state_dict.get("token_embedding.weight")
    pos = state_dict.get("blocks.0.pos_embedding.embedding.weight")
    q = state_dict.get("blocks.0.attn.q.weight")
    fc1 = state_dict.get("blocks.0.ffn.fc1.weight")
    if any(t is None or not isinstance(t, torch.Tensor) for t in (emb, pos, q, fc1)) or emb.ndim != 2 or pos.ndim != 2:
        raise TextEncoderLoadError(
            f"{source}: not a umT5 encoder state dict in the release's (Wan T5) layout: it lacks "
            "token_embedding.weight / blocks.0.{attn.q,ffn.fc1,pos_embedding.embedding}.weight"
        )
    vocab, d_model = emb.shape
    if vocab == UMT5_XXL_VOCAB and d_model == 4096:
        return umt5_xxl_config()
    buckets, heads = pos.shape
    layers = 1 + max(int(m.group(1)) for k in state_dict if (m := _BLOCK_RE.fullmatch(k)))
    return _umt5_config(
        vocab=vocab, d_model=d_model, d_kv=q.shape[0] // heads, heads=heads, d_ff=fc1.shape[0], layers=layers,
        buckets=buckets,
    )


def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_release_state_dict(state_dict: dict[str, torch.Tensor], config, source: str) -> None:
    """Strict check against the expected key set and shapes; raises naming the file and the problem."""
    require_state_dict(state_dict, release_key_shapes(config), f"{source}: not a valid umT5 encoder checkpoint",
                       TextEncoderLoadError)


def load_release_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a Wan-layout T5 `.pth` safely (`weights_only=True`, memory-mapped where possible)."""
    path = Path(path)
    if not path.is_file():
        raise TextEncoderLoadError(f"{path}: file not found (expected the release's {RELEASE_T5_FILE})")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:  # torch raises many types for truncated / foreign / unsafe files
        raise TextEncoderLoadError(
            f"{path}: not a readable torch checkpoint (truncated, corrupt or not a state dict): {exc}"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TextEncoderLoadError(f"{path}: does not hold a state dict of tensors (got {type(obj).__name__})")
    return obj


# ------------------------------------------------------------------------------------------- encoder


@dataclass(frozen=True)
class TokenizedPrompt:
    """A prepared prompt's ids (EOS included, no padding) and its `<extra_id_2>` positions.

    `truncated` is set when the prompt was longer than 512 tokens and cut as the release cuts it
    (first 511 tokens + EOS); it carries the full length and the spoken lines lost.
    """

    text: str
    input_ids: list[int]
    speaker_positions: list[int]
    truncated: PromptTooLongError | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodedText:
    """Per prompt: context `[num_tokens, 4096]` (real tokens incl. EOS), speaker positions, lengths."""

    context: list[torch.Tensor]
    speaker_positions: list[list[int]]
    num_tokens: list[int]
    input_ids: list[list[int]] = field(default_factory=list)
    truncated: list[PromptTooLongError | None] = field(default_factory=list)


class TextEncoder:
    """umT5 encoder + tokenizer with NAVA's prompt preparation."""

    def __init__(self, model, tokenizer, max_length: int = TEXT_LEN):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.speaker_token_id = self._find_speaker_token_id(tokenizer)

    @staticmethod
    def _find_speaker_token_id(tokenizer) -> int:
        """The release's rule (first id of tokenising the marker alone), checked to be one token."""
        ids = tokenizer(SPEAKER_TOKEN, add_special_tokens=True)["input_ids"]
        direct = tokenizer.convert_tokens_to_ids(SPEAKER_TOKEN)
        if ids[0] != direct or ids[0] == tokenizer.unk_token_id:
            raise TextEncoderLoadError(
                f"the tokenizer does not keep {SPEAKER_TOKEN} as one token (got ids {ids[:4]}); "
                "use umT5's tokenizer"
            )
        return int(ids[0])

    # -- loading

    @classmethod
    def from_release(
        cls,
        pth_path: str | Path,
        tokenizer_dir: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.bfloat16,
    ) -> "TextEncoder":
        """Load the release's `models_t5_umt5-xxl-enc-bf16.pth` (or a tiny one) plus a tokenizer folder.

        The model is built on the meta device and the converted tensors are assigned, so the 11 GB file
        is not held twice. bf16 is the release's dtype; pass float32 for exactness tests.
        """
        from transformers import UMT5EncoderModel

        source = str(pth_path)
        state = load_release_state_dict(pth_path)
        config = config_from_release_state_dict(state, source)
        check_release_state_dict(state, config, source)
        converted = {k: v.to(device=device, dtype=dtype) for k, v in release_to_transformers(state).items()}
        converted["encoder.embed_tokens.weight"] = converted["shared.weight"]
        with torch.device("meta"):
            model = UMT5EncoderModel(config)
        model.load_state_dict(converted, strict=True, assign=True)
        model.encoder.embed_tokens = model.shared
        return cls(model, _load_tokenizer(tokenizer_dir))

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.bfloat16,
    ) -> "TextEncoder":
        """Load a transformers layout: `folder/text_encoder/` (UMT5EncoderModel) + `folder/tokenizer/`."""
        from transformers import UMT5EncoderModel

        folder = Path(folder)
        enc_dir = folder / "text_encoder"
        if not enc_dir.is_dir():
            raise TextEncoderLoadError(f"{enc_dir}: folder not found (expected a transformers UMT5 encoder)")
        try:
            model, info = UMT5EncoderModel.from_pretrained(enc_dir, dtype=dtype, output_loading_info=True)
        except Exception as exc:
            raise TextEncoderLoadError(f"{enc_dir}: cannot load a UMT5EncoderModel: {exc}") from exc
        problems = []
        for what in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
            items = sorted(str(x) for x in info.get(what) or [])
            if items:
                problems.append(f"{len(items)} {what.replace('_', ' ')} ({_describe(items)})")
        if problems:
            raise TextEncoderLoadError(f"{enc_dir}: not a valid umT5 encoder: " + "; ".join(problems))
        return cls(model.to(device), _load_tokenizer(folder / TOKENIZER_DIR))

    # -- prompts

    prepare_prompt = staticmethod(prepare_prompt)

    def tokenize(self, prompts: list[str], truncate: bool = False) -> list[TokenizedPrompt]:
        """Prepare and tokenise prompts. Over 512 tokens: raise `PromptTooLongError`, or with
        `truncate` cut as the release does (511 tokens + EOS) and record what was lost."""
        out = []
        for raw in prompts:
            text = prepare_prompt(raw)
            enc = self.tokenizer(text, add_special_tokens=True, truncation=False, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            too_long = None
            if len(ids) > self.max_length:
                too_long = PromptTooLongError(len(ids), self._spans_beyond(text, enc["offset_mapping"]), self.max_length)
                if not truncate:
                    raise too_long
                ids = ids[: self.max_length - 1] + ids[-1:]  # the release's cut keeps the closing EOS
            positions = [i for i, t in enumerate(ids) if t == self.speaker_token_id]
            out.append(TokenizedPrompt(text=text, input_ids=ids, speaker_positions=positions, truncated=too_long))
        return out

    def _spans_beyond(self, text: str, offsets: list[tuple[int, int]]) -> list[SpanBeyond]:
        """Spans whose last token would not survive the release's cut (511 tokens + EOS)."""
        keep = self.max_length - 1
        beyond = []
        for index, (start, end, line) in enumerate(speech_spans(text)):
            toks = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
            if toks and toks[-1] >= keep:
                beyond.append(SpanBeyond(index=index, text=line.removeprefix(SPEAKER_TOKEN), first_token=toks[0], last_token=toks[-1]))
        return beyond

    # -- encoding

    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.shared.weight.dtype

    @torch.no_grad()
    def encode(self, prompts: list[str], truncate: bool = False) -> EncodedText:
        """Encode prompts to trimmed contexts (model dtype, model device) and speaker positions.

        The batch is padded to its longest prompt with an attention mask, so each prompt's rows equal
        the release's (which pads to 512 under the same mask).
        """
        toks = self.tokenize(list(prompts), truncate=truncate)
        longest = max(t.num_tokens for t in toks)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(toks), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(toks), longest), dtype=torch.long)
        for row, t in enumerate(toks):
            ids[row, : t.num_tokens] = torch.tensor(t.input_ids)
            mask[row, : t.num_tokens] = 1
        hidden = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
        return EncodedText(
            context=[hidden[row, : t.num_tokens] for row, t in enumerate(toks)],
            speaker_positions=[t.speaker_positions for t in toks],
            num_tokens=[t.num_tokens for t in toks],
            input_ids=[t.input_ids for t in toks],
            truncated=[t.truncated for t in toks],
        )


def _load_tokenizer(folder: str | Path):
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise TextEncoderLoadError(f"{folder}: tokenizer folder not found (expected umT5's tokenizer)")
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise TextEncoderLoadError(f"{folder}: cannot load a tokenizer: {exc}") from exc


# ------------------------------------------------------------------------------------ tiny checkpoint


@dataclass(frozen=True)
class TinyT5Spec:
    """Tiny widths; d_model stays 4096 because the backbone's text_dim is 4096 even in NAVAConfig.tiny()."""

    d_model: int = 4096
    d_kv: int = 8
    num_heads: int = 2
    d_ff: int = 32
    num_layers: int = 2
    num_buckets: int = 32


def _tiny_release_state_dict(config, seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights with the release's init scales (t5.py `init_weights`), as bf16 in Wan's layout."""
    gen = torch.Generator().manual_seed(seed)
    d, inner, ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    stds = {
        "token_embedding.weight": 1.0,
        "attn.q.weight": (d * inner) ** -0.5,
        "attn.k.weight": d**-0.5,
        "attn.v.weight": d**-0.5,
        "attn.o.weight": inner**-0.5,
        "ffn.gate.0.weight": d**-0.5,
        "ffn.fc1.weight": d**-0.5,
        "ffn.fc2.weight": ff**-0.5,
        "pos_embedding.embedding.weight": (2 * config.relative_attention_num_buckets * config.num_heads) ** -0.5,
    }
    state = {}
    for key, shape in release_key_shapes(config).items():
        name = key.split(".", 2)[-1] if key.startswith("blocks.") else key
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or key == "norm.weight":
            # ones as in the release's init, nudged so a wrong norm mapping would show in outputs
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            t = torch.randn(shape, generator=gen) * stds[name]
        state[key] = t.to(torch.bfloat16)
    return state


def write_tiny_text_encoder(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write a tiny umT5 encoder in the release's format plus an offline-trained tokenizer.

    Returns `{"text_encoder": folder/models_t5_umt5-xxl-enc-bf16.pth, "tokenizer": folder/tokenizer}`.
    Same seed -> same bytes.
    """
    from .tokenizer_build import write_tiny_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok_dir = write_tiny_tokenizer(folder / TOKENIZER_DIR, clean=clean_prompt)
    vocab = len(_load_tokenizer(tok_dir))
    spec = TinyT5Spec()
    config = _umt5_config(
        vocab=vocab, d_model=spec.d_model, d_kv=spec.d_kv, heads=spec.num_heads, d_ff=spec.d_ff,
        layers=spec.num_layers, buckets=spec.num_buckets,
    )
    pth = folder / RELEASE_T5_FILE
    tmp = pth.with_suffix(".pth.tmp")
    torch.save(_tiny_release_state_dict(config, seed), tmp)
    tmp.replace(pth)
    logger.info("wrote tiny umT5 encoder (%s, vocab %d) to %s", _mb(pth), vocab, pth)
    return {"text_encoder": pth, "tokenizer": tok_dir}


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MB"


__all__ = [
    "EncodedText",
    "PromptTooLongError",
    "RELEASE_T5_FILE",
    "SPEAKER_TOKEN",
    "SpanBeyond",
    "TEXT_LEN",
    "TextEncoder",
    "TextEncoderLoadError",
    "TokenizedPrompt",
    "check_release_state_dict",
    "clean_prompt",
    "config_from_release_state_dict",
    "load_release_state_dict",
    "prepare_prompt",
    "release_key_shapes",
    "release_to_transformers",
    "speech_spans",
    "umt5_xxl_config",
    "write_tiny_text_encoder",
]
