"""Turn exceptions into messages that say what went wrong and what to do about it.

The studio never shows a bare traceback: each failure a creator can hit maps to one sentence with a fix.
Engine exception classes are matched by name so this module imports nothing heavy.
"""

from __future__ import annotations


def explain(exc: BaseException) -> str:
    """A user-facing message for `exc` (what happened + what to do)."""
    name = type(exc).__name__
    text = str(exc).strip() or name
    fix = getattr(exc, "fix", None)
    why = getattr(exc, "why", None)
    what = getattr(exc, "what", None)
    if what and why:
        return f"{what}: {why}" + (f". What to do: {fix}" if fix else "")
    if name == "RequestError":
        return f"The render settings are not valid: {text}"
    if name == "PromptTooLongError":
        return (f"The prompt is too long for NAVA's text encoder ({text}). What to do: shorten the scene "
                "description or the dialogue, or split the scene into two clips.")
    if name in ("AudioInputError", "InputError"):
        return f"A voice or image file cannot be used: {text}. What to do: upload a clear speech clip of 3-10 s (wav, mp3, flac, ogg, m4a)."
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        return ("The GPU ran out of memory. What to do: pick the 'low' memory profile on the Model tab, "
                "shorten the clip, or use a smaller aspect bucket.")
    if name == "RenderCancelled":
        return "Cancelled; nothing was written."
    if isinstance(exc, ImportError):
        return f"This build is missing part of the engine ({text}). What to do: update NAVA Studio (git pull) and restart."
    if isinstance(exc, FileNotFoundError):
        return f"A file is missing: {text}. What to do: upload it again or check the weights folder on the Model tab."
    if isinstance(exc, PermissionError):
        return f"A file cannot be written: {text}. What to do: check NAVA_STUDIO_HOME points at a writable folder."
    return f"The render failed ({name}: {text}). What to do: check the Model tab and the server log; try again."
