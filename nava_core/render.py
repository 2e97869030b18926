"""Render a request to the files a user keeps (the one output writer of every render path).

`render_to_files` is the one place that turns a `RenderResult` into the files a user keeps: the MP4
(or, in audio mode, WAV + FLAC), the full-rate stereo WAV, subtitles when the prompt has lines, and the
request as a JSON sidecar. Names are never reused, so an earlier render is never overwritten.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from nava_core.outputs import RenderOutputs
from nava_core.progress import CancelToken, ProgressCallback, ProgressEvent, RenderCancelled, null_progress
from nava_core.request import RenderRequest

logger = logging.getLogger(__name__)


def _slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^\w]+", "-", text.strip().lower(), flags=re.UNICODE).strip("-")
    return (s[:limit].strip("-") or "render")


def unique_stem(out_dir: Path, request: RenderRequest) -> Path:
    """A fresh `<out_dir>/<slug>-s<seed>-<time>` that no existing file starts with."""
    base = f"{_slug(request.title or request.prompt)}-s{request.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem = out_dir / base
    n = 1
    while any(out_dir.glob(f"{stem.name}.*")):
        n += 1
        stem = out_dir / f"{base}-{n}"
    return stem


def subtitles_for(request: RenderRequest) -> str | None:
    """SRT text for the request's spoken lines (from its project, else parsed from the prompt), with no
    cue past the end of the clip actually rendered."""
    try:
        import prompt_builder as pb
    except ImportError:
        return None
    try:
        project = pb.Project.from_dict(request.project) if request.project else pb.parse_prompt(request.prompt)
        srt = pb.to_srt(project, seconds=request.output_seconds)
    except Exception as e:  # subtitles are a convenience: never fail a render for them
        logger.warning("no subtitles for this render: %s", e)
        return None
    return srt if srt.strip() else None


def render_to_files(
    pipe: Any,
    request: RenderRequest,
    out_dir: str | Path,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    preview_every: int = 0,
) -> RenderOutputs:
    """Render and write every output atomically; a cancelled render leaves no file behind.

    `preview_every=k` asks for a live preview on every k-th denoising event (nava_core.preview); it is
    only passed on when set, so renderers without previews (a worker group) still work with it off.

    The sidecar, the MP4/WAV metadata and the returned result all carry the request the pipeline
    rendered (`RenderResult.request`), so they cannot disagree with it.
    """
    progress = progress or null_progress
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {"preview_every": preview_every} if preview_every > 0 else {}
    result = pipe(request, progress=progress, cancel=cancel, **extra)
    if cancel is not None and cancel.cancelled:
        raise RenderCancelled("render cancelled")
    progress(ProgressEvent("writing"))
    from nava_core.export import write_flac, write_mp4, write_sidecar, write_wav  # PyAV: not before it is needed

    t0 = time.perf_counter()
    # the request the pipeline actually rendered (it is final already when the caller finalised it)
    request = getattr(result, "request", None) or request
    stem = unique_stem(out_dir, request)
    req_json = request.to_json()
    written: list[Path] = []
    try:
        mp4 = flac = srt_path = None
        if result.frames is not None:
            mp4 = write_mp4(stem.with_suffix(".mp4"), result.frames, result.audio, result.sample_rate, req_json)
            written.append(mp4)
        wav = write_wav(stem.with_suffix(".wav"), result.audio, result.sample_rate, req_json)
        written.append(wav)
        if result.frames is None:
            flac = write_flac(stem.with_suffix(".flac"), result.audio, result.sample_rate, req_json)
            written.append(flac)
        srt = subtitles_for(request)
        if srt:
            srt_path = stem.with_suffix(".srt")
            tmp = srt_path.with_name(f".{srt_path.name}.tmp")
            tmp.write_text(srt, encoding="utf-8")
            tmp.replace(srt_path)
            written.append(srt_path)
        sidecar = write_sidecar(stem.with_suffix(".json"), req_json)
    except BaseException:
        for p in [*written, stem.with_suffix(".json")]:  # write_mp4 writes the sidecar too
            p.unlink(missing_ok=True)
        raise
    timings = dict(result.timings)
    timings["write_s"] = time.perf_counter() - t0
    progress(ProgressEvent("done", message=str(mp4 or wav)))
    return RenderOutputs(request=request, wav=wav, sidecar=sidecar, mp4=mp4, flac=flac, srt=srt_path,
                         timings=timings, warnings=tuple(result.warnings))
