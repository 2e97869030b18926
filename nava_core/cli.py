"""`nava-render`: render request files (or, with `batch`, a batch definition) without the browser.

Argument parsing, reading and checking the input files, and the terminal progress bar live here; the
render itself is `nava_core.render.render_to_files` on a pipeline (or a Ulysses worker group), and
batches are `nava_core.batch_cli`. Heavy modules (torch, diffusers) are imported only once a render
starts, so `--help` and refusals of bad input answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from nava_core.config import GuidanceScales, Resolution, valid_gpu_counts
from nava_core.profiles import ALIASES, CHOICES
from nava_core.progress import ProgressCallback, ProgressEvent
from nava_core.request import RenderRequest, RequestError

logger = logging.getLogger(__name__)


class InputFileError(ValueError):
    """The CLI's input file cannot be read as render requests."""


def requests_from_file(path: Path, overrides: dict[str, Any]) -> list[RenderRequest]:
    """A request JSON, or a JSONL in the release's format (`prompt`, `image_path`, `spk_wavs`, optional `mode`).

    Every request passes the same input checks as the studio's API (text, numbers, voice and image files
    by content), so a bad line is refused before any weights are loaded.
    """
    from nava_core.validation import check_request_dict

    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    base = path.parent
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputFileError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except RecursionError:
            raise InputFileError(f"{path}: the JSON is nested too deeply; a render request is a flat object") from None
        items = data if isinstance(data, list) else [data]
        if not all(isinstance(d, dict) for d in items):
            raise InputFileError(f"{path}: expected a render request object (or a list of them)")
        return [check_request_dict(_apply_overrides(d, overrides), base_dir=base) for d in items]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputFileError(f"{path}, line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise InputFileError(f"{path}, line {n}: expected an object with a 'prompt'")
        prompt = row.get("prompt", row.get("text"))
        if not isinstance(prompt, str):
            raise InputFileError(f"{path}, line {n}: no 'prompt' text")
        fields: dict[str, Any] = {"prompt": prompt}
        if row.get("image_path"):
            fields["image"] = str(_resolve(base, row["image_path"]))
            fields["mode"] = "image_audio_video"
        if row.get("spk_wavs"):
            fields["speaker_wavs"] = [str(_resolve(base, p)) if p else None for p in row["spk_wavs"]]
        if row.get("mode"):
            fields["mode"] = row["mode"]
        merged = _apply_overrides(fields, overrides)
        try:
            out.append(check_request_dict(merged, base_dir=base))
        except (RequestError, ValueError) as e:
            raise InputFileError(f"{path}, line {n}: {e}") from None
    if not out:
        raise InputFileError(f"{path}: no requests found")
    return out


def _resolve(base: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else (base / q)


def build_parser() -> argparse.ArgumentParser:
    d = GuidanceScales()
    p = argparse.ArgumentParser(
        prog="nava-render",
        description="Render NAVA requests (a request .json or a release-format .jsonl) to MP4/WAV files.",
    )
    p.add_argument("input", help="request .json, or .jsonl with one {prompt, image_path?, spk_wavs?, mode?} per line; "
                                 "or 'batch' followed by a batch definition file")
    p.add_argument("batch_file", nargs="?", help="with 'batch': the batch definition JSON")
    p.add_argument("--weights", default="tiny", help="weight-set folder, or 'tiny' for random test weights (default)")
    p.add_argument("--out", default="outputs", help="output folder (default: ./outputs)")
    p.add_argument("--mode", choices=["audio_video", "image_audio_video", "audio"], help="override the mode")
    p.add_argument("--steps", type=int, help="denoising steps (release: 50)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seconds", type=float, help="duration in seconds (snapped to whole latent frames)")
    g.add_argument("--frames", type=int, help="latent frames T (video has 4T-3 frames at 24 fps)")
    p.add_argument("--size", help="WIDTHxHEIGHT, e.g. 1280x704, 704x1280, 960x960")
    p.add_argument("--seed", type=int, help="noise seed (video and audio unless --audio-seed)")
    p.add_argument("--audio-seed", type=int, help="separate seed for the audio noise")
    p.add_argument("--video-guidance", type=float, help=f"video text guidance g_v (default {d.video}; 0 = off)")
    p.add_argument("--audio-guidance", type=float, help=f"audio text guidance g_a (default {d.audio}; 0 = off)")
    p.add_argument("--video-align-guidance", type=float, help=f"video alignment guidance g_va (default {d.video_align})")
    p.add_argument("--audio-align-guidance", type=float, help=f"audio alignment guidance g_aa (default {d.audio_align})")
    p.add_argument("--timbre-guidance", type=float, help=f"timbre guidance g_t (default {d.timbre}; needs voices)")
    p.add_argument("--precision", choices=["nava", "fp32"], help="'nava' matches the release (bf16); 'fp32' for checks")
    p.add_argument("--sample-rate", type=int, choices=[16000, 48000], help="audio output rate (release: 16000)")
    p.add_argument("--tiled-vae", action="store_true", help="decode video in tiles (less memory)")
    p.add_argument("--memory-profile", metavar="PROFILE",
                   help=f"memory profile: {', '.join(CHOICES)} (older names: {', '.join(ALIASES)})")
    p.add_argument("--gpus", type=int, metavar="N",
                   help=f"GPUs for Ulysses sequence parallel, dividing the attention heads "
                        f"({', '.join(map(str, valid_gpu_counts()))})")
    p.add_argument("--refuse-long-prompts", action="store_true",
                   help="refuse prompts over 512 umT5 tokens (default: truncate as the release does, with a warning)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from nava_core.cluster.cli import add_cluster_args  # torch- and Ray-free

    add_cluster_args(p)
    p.add_argument("--rewrite", action="store_true", help="rewrite each prompt with an LLM first (spoken lines are "
                   "kept byte-for-byte; a prompt whose rewrite fails is rendered as written); see --rewrite-* below")
    p.add_argument("--rewrite-concurrency", type=int, default=4, help="rewrite requests in flight (default 4)")
    from nava_core.rewriting import add_rewrite_arguments

    add_rewrite_arguments(p, prefix="rewrite-")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    for name in ("mode", "steps", "seconds", "seed", "audio_seed", "precision", "memory_profile", "gpus"):
        v = getattr(args, name)
        if v is not None:
            o[name] = v
    if args.frames is not None:
        if args.frames < 1:
            raise RequestError("--frames must be at least 1")
        o["seconds"] = (args.frames - 1) / 6
    if args.size:
        r = Resolution.parse(args.size)
        o["width"], o["height"] = r.width, r.height
    if args.sample_rate:
        o["audio_sample_rate"] = args.sample_rate
    if args.tiled_vae:
        o["tiled_vae"] = True
    scales = {
        "video": args.video_guidance, "audio": args.audio_guidance, "video_align": args.video_align_guidance,
        "audio_align": args.audio_align_guidance, "timbre": args.timbre_guidance,
    }
    given = {k: v for k, v in scales.items() if v is not None}
    if given:
        o[GUIDANCE_OVERRIDES] = given
    o[TRUNCATE_DEFAULT] = not getattr(args, "refuse_long_prompts", False)
    return o


GUIDANCE_OVERRIDES = "_guidance_overrides"
TRUNCATE_DEFAULT = "_truncate_prompt_default"  # the CLI truncates over-long prompts as the release does


def _apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Command-line flags over a request's fields; guidance flags change only the scales they name."""
    scales = overrides.get(GUIDANCE_OVERRIDES)
    merged = {**data, **{k: v for k, v in overrides.items() if k not in (GUIDANCE_OVERRIDES, TRUNCATE_DEFAULT)}}
    if TRUNCATE_DEFAULT in overrides and "truncate_prompt" not in data:
        merged["truncate_prompt"] = overrides[TRUNCATE_DEFAULT]
    if merged.get("mode") == "audio" and "guidance" not in data:
        merged["guidance"] = dataclasses.asdict(GuidanceScales.audio_only())
    if scales:
        base = merged.get("guidance") or {}
        base = dataclasses.asdict(base) if isinstance(base, GuidanceScales) else dict(base)
        merged["guidance"] = {**dataclasses.asdict(GuidanceScales()), **base, **scales}
    return merged


class _TerminalProgress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def __call__(self, ev: ProgressEvent) -> None:
        if self.quiet:
            return
        if ev.phase == "denoising" and ev.total:
            if self.bar is None:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=ev.total, desc="denoising", unit="step", file=sys.stderr)
            self.bar.n = ev.step
            self.bar.refresh()
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        print(ev.describe(), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """The `nava-render` console script; returns the exit status (2: bad input, 3: weights or the output
    folder (not a folder, not writable, disk full), 1: a render failed)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.input == "batch":
            if args.rewrite:
                raise InputFileError("--rewrite works on a request .json or a .jsonl; for a batch, rewrite its "
                                     "prompts first with nava-rewrite")
            if not args.batch_file:
                raise InputFileError("'batch' needs a batch definition file: nava-render batch FILE")
            return _run_batch(args)
        if args.cluster:
            raise InputFileError("--cluster runs batches: nava-render batch FILE --cluster ADDRESS")
        requests = requests_from_file(Path(args.input), _overrides(args))
    except (InputFileError, RequestError, ValueError) as e:
        print(f"nava-render: {e}", file=sys.stderr)
        return 2
    from nava_core.outdir import OutputFolderError, as_output_error, check_output_dir, is_output_error

    try:  # before the weights load: a mistyped --out must not cost a model load
        check_output_dir(args.out)
    except OutputFolderError as e:
        print(f"nava-render: {e}", file=sys.stderr)
        return 3
    if args.rewrite:
        from nava_core.rewriting import config_from_args, rewrite_requests
        from prompt_builder.rewrite import RewriteError

        try:
            requests = rewrite_requests(requests, config_from_args(args, prefix="rewrite-"),
                                        concurrency=args.rewrite_concurrency,
                                        report=lambda m: print(f"nava-render: rewrite {m}", file=sys.stderr))
        except RewriteError as e:
            print(f"nava-render: cannot rewrite: {e}; run without --rewrite to render the prompts as written",
                  file=sys.stderr)
            return 2
    progress = _TerminalProgress(args.quiet)
    try:
        engine = _load_engine(args, progress)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"nava-render: cannot load weights: {e}", file=sys.stderr)
        return 3
    from nava_core.render import render_to_files

    try:
        failures = 0
        for i, req in enumerate(requests, 1):
            if len(requests) > 1:
                print(f"[{i}/{len(requests)}] {req.title or req.prompt[:60]}", file=sys.stderr)
            try:
                outs = render_to_files(engine, req, args.out, progress=progress)
            except Exception as e:  # noqa: BLE001 - the output folder's problems stop the run (exit 3)
                if is_output_error(e, args.out):
                    print(f"nava-render: {as_output_error(e, args.out)}", file=sys.stderr)
                    return 3
                if not isinstance(e, (RequestError, ValueError, FileNotFoundError, RuntimeError)):
                    raise
                failures += 1
                print(f"nava-render: request {i} failed: {e}", file=sys.stderr)
                continue
            for warning in outs.warnings:
                print(f"nava-render: warning: {warning}", file=sys.stderr)
            print(outs.mp4 or outs.wav)
    finally:
        if hasattr(engine, "close"):
            engine.close()
    return 1 if failures else 0


def _load_engine(args: argparse.Namespace, progress: ProgressCallback) -> Any:
    """One in-process pipeline, or a Ulysses worker group when `--gpus N` asks for more than one GPU."""
    from nava_core.workers import load_engine

    return load_engine(args.weights, device=args.device, precision=args.precision, memory_profile=args.memory_profile,
                       gpus=args.gpus, progress=progress)


def _run_batch(args: argparse.Namespace) -> int:
    from nava_core.batch_cli import run_batch_cli

    return run_batch_cli(args)


if __name__ == "__main__":
    raise SystemExit(main())
