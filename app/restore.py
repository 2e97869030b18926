"""Bring a project back from a file the studio made: an MP4/WAV/FLAC carries its render request.

A person drops a clip from their downloads onto the page and gets the exact settings back; rendering
again gives the same request (the builder state rebuilt here maps back to it field for field).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nava_core.request import RenderRequest, RequestError

from app import builder as B

MEDIA_SUFFIXES = (".mp4", ".wav", ".flac", ".json")


class RestoreError(ValueError):
    """The file holds no studio request; the message says what to do instead."""


def state_from_media(path: str | Path) -> tuple[dict[str, Any], RenderRequest]:
    """(builder state, the embedded request) of a studio-made file; raises RestoreError otherwise."""
    from app.engine import read_embedded_request as read_request

    p = Path(path)
    if p.suffix.lower() not in MEDIA_SUFFIXES:
        raise RestoreError(f"{p.name} is not a clip the studio makes; drop an MP4, WAV or FLAC rendered here "
                           "(or its .json sidecar).")
    try:
        text = read_request(p)
    except Exception as e:  # noqa: BLE001 - a damaged file is reported, not raised
        raise RestoreError(f"{p.name} cannot be read ({e}).") from e
    if not text:
        raise RestoreError(f"{p.name} has no render settings inside: it was not made by NAVA Studio, or its "
                           "metadata was stripped (e.g. by re-encoding). Use the .json next to the original.")
    try:
        request = RenderRequest.from_json(text)
    except (RequestError, ValueError, TypeError) as e:
        raise RestoreError(f"{p.name} carries settings this studio cannot read ({e}).") from e
    return B.state_from_request(request), request
