"""NAVA prompt builder: structured project -> dense prompt with `<S>...<E>` spans, voices in span order.

Pure Python (no torch). Prompt rewriting with an LLM: `rewrite` (guarantees, retry) and `rewrite_endpoint`
(any OpenAI-compatible server); the local-model backend lives in `nava_core.rewrite_local`.
"""

from .bundle import BundleError, load_bundle, save_bundle, sniff_ok
from .compiler import CompiledPrompt, compile_project
from .lint import Finding, lint_project, lint_text
from .parser import parse_prompt
from .presets import (PARTIAL_KINDS, PRESETS_DIR, Partial, apply_partial, list_partials, list_presets,
                      load_partial, load_preset, save_preset)
from .rewrite import RewriteError, RewriteResult, Rewriter, check_rewrite
from .schema import (LANGUAGES, MODES, PROJECT_VERSION, RATES, AudioDesign, Beat, Camera, CastMember, Delivery,
                     Project, Scene, SchemaError, Subject)
from .subtitles import to_srt, to_vtt
from .text import TOKEN_BUDGET, estimate_tokens
from .timeline import TimedLine, estimate_timeline, move_line, reassign_line, retime_line

__all__ = [
    "AudioDesign", "Beat", "BundleError", "Camera", "CastMember", "CompiledPrompt", "Delivery",
    "Finding", "LANGUAGES", "MODES", "PARTIAL_KINDS", "PRESETS_DIR", "PROJECT_VERSION", "Partial", "Project",
    "RATES", "RewriteError", "RewriteResult", "Rewriter", "Scene", "SchemaError", "Subject", "TOKEN_BUDGET",
    "TimedLine", "apply_partial",
    "check_rewrite", "compile_project", "estimate_timeline", "estimate_tokens", "lint_project", "lint_text",
    "list_partials", "list_presets", "load_bundle", "load_partial", "load_preset", "move_line", "parse_prompt",
    "reassign_line", "retime_line", "save_bundle", "save_preset", "sniff_ok", "to_srt", "to_vtt",
]
