"""`nava-rewrite IN.txt|IN.jsonl -o OUT.jsonl`: rewrite a file of prompts, resumably, many at a time.

One output row per non-empty input line, in input order, carrying the input line number (`line`).
A JSONL row keeps every field it came with (`image_path`, `spk_wavs`, ...), so OUT.jsonl renders
directly with `nava-render OUT.jsonl`. A row whose rewrite failed keeps its original prompt and is
marked (`rewrite_status: "failed"` and the reason), never dropped.

Resuming: each finished row is appended at once to `OUT.jsonl.partial`; OUT.jsonl is written (atomically,
in order) only when every row has an answer. Running the same command again reuses the rows already
rewritten (same line, same original prompt) from OUT.jsonl or the partial file and redoes the rest,
failed rows included. `--fresh` ignores earlier results.

Exit status: 0 all rewritten, 1 some rows kept their original, 2 bad input or flags (nothing written),
3 the rewriter cannot work (unreachable, key refused, no such model): finished rows are kept in the
partial file for the next run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from nava_core.rewriting import (FATAL_KINDS, MAX_CONCURRENCY, add_rewrite_arguments, config_from_args,
                                 make_rewriter, rewrite_many)
from prompt_builder.rewrite import RewriteError, RewriteResult

log = logging.getLogger(__name__)

STATUS_OK, STATUS_FAILED = "ok", "failed"


class InputError(ValueError):
    """The input file cannot be read as prompts."""


@dataclass
class Row:
    line: int  # 1-based line number in the input file
    data: dict[str, Any]  # the input row (a .txt line becomes {"prompt": ...})
    key: str  # which field holds the prompt ("prompt" or the release's "text")

    @property
    def prompt(self) -> str:
        return self.data[self.key]


def read_rows(path: Path) -> list[Row]:
    """Every non-empty line of a .txt (one prompt each) or .jsonl (objects with 'prompt'), checked up front."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    rows: list[Row] = []
    jsonl = path.suffix.lower() in (".jsonl", ".json")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if not jsonl:
            rows.append(Row(n, {"prompt": line.strip()}, "prompt"))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}, line {n}: not valid JSON ({e.msg}); one object per line") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}, line {n}: expected an object with a 'prompt'")
        key = "prompt" if "prompt" in obj else "text" if "text" in obj else ""
        if not key or not isinstance(obj[key], str) or not obj[key].strip():
            raise InputError(f"{path}, line {n}: no 'prompt' text")
        rows.append(Row(n, obj, key))
    if not rows:
        raise InputError(f"{path}: no prompts found")
    return rows


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def load_done(out: Path, rows: Sequence[Row]) -> dict[int, dict[str, Any]]:
    """Rows already rewritten by an earlier run, by input line, when their original prompt is unchanged."""
    want = {r.line: r.prompt for r in rows}
    done: dict[int, dict[str, Any]] = {}
    for source in (out, partial_path(out)):
        if not source.is_file():
            continue
        for raw in source.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: that row is simply redone
            if (isinstance(obj, dict) and obj.get("rewrite_status") == STATUS_OK
                    and want.get(obj.get("line")) == obj.get("original_prompt")):
                done[obj["line"]] = obj
    return done


def output_row(row: Row, result: RewriteResult) -> dict[str, Any]:
    out = dict(row.data)
    out[row.key] = result.text
    out["line"] = row.line
    out["original_prompt"] = row.prompt
    out["rewrite_status"] = STATUS_OK if result.accepted else STATUS_FAILED
    out["rewrite_message"] = result.message
    out["rewrite_attempts"] = result.attempts
    return out


def reused_row(row: Row, previous: dict[str, Any]) -> dict[str, Any]:
    """The earlier rewrite with the input's current fields (only the prompt comes from before)."""
    out = dict(row.data)
    out[row.key] = previous.get(row.key, previous.get("prompt", row.prompt))
    for k in ("line", "original_prompt", "rewrite_status", "rewrite_message", "rewrite_attempts"):
        out[k] = previous.get(k)
    return out


def _jsonl(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nava-rewrite", description="Rewrite prompts with an LLM, keeping every "
                                "spoken <S>...<E> line byte-for-byte. Resumable: re-run the same command.")
    p.add_argument("input", help=".txt with one prompt per line, or .jsonl with {prompt, image_path?, spk_wavs?} rows")
    p.add_argument("-o", "--output", required=True, help="output .jsonl")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4; 1 for a local model)")
    p.add_argument("--fresh", action="store_true", help="ignore results of an earlier run")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    add_rewrite_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.output)
    try:
        if not 1 <= args.concurrency <= MAX_CONCURRENCY:
            raise InputError(f"--concurrency must be from 1 to {MAX_CONCURRENCY}; got {args.concurrency}")
        if out.resolve() == Path(args.input).resolve():
            raise InputError("the output must be a different file from the input")
        rows = read_rows(Path(args.input))
        config = config_from_args(args)
        rewriter = make_rewriter(config)
    except (InputError, RewriteError) as e:
        print(f"nava-rewrite: {e}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(out)
    if args.fresh:
        part.unlink(missing_ok=True)
    done = {} if args.fresh else load_done(out, rows)
    finished: dict[int, dict[str, Any]] = {line: reused_row(r, done[line]) for r in rows
                                           if (line := r.line) in done}
    todo = [r for r in rows if r.line not in finished]
    if done:
        print(f"nava-rewrite: resuming: {len(finished)} of {len(rows)} row(s) already rewritten", file=sys.stderr)
    lock = threading.Lock()
    journaled = _lines_in(part)
    with part.open("a", encoding="utf-8") as journal:
        for r in rows:  # the partial file alone must be enough to resume
            if r.line in finished and r.line not in journaled:
                journal.write(_jsonl(finished[r.line]))
        journal.flush()

        def on_done(i: int, result: RewriteResult) -> None:
            if result.error_kind in FATAL_KINDS:
                return  # not the row's fault: it is redone on the next run
            row = todo[i]
            obj = output_row(row, result)
            with lock:
                finished[row.line] = obj
                journal.write(_jsonl(obj))
                journal.flush()
                if not args.quiet:
                    print(f"[{len(finished)}/{len(rows)}] line {row.line}: {result.message}", file=sys.stderr)

        try:
            results = rewrite_many(rewriter, [r.prompt for r in todo], concurrency=args.concurrency, on_done=on_done)
        except KeyboardInterrupt:
            print(f"nava-rewrite: interrupted: {len(finished)} of {len(rows)} row(s) are saved in {part}; run the "
                  "same command again to continue", file=sys.stderr)
            return 130
        finally:
            rewriter.backend.close()
    fatal = next((r for r in results if r is not None and r.error_kind in FATAL_KINDS), None)
    if fatal is not None or len(finished) < len(rows):
        why = fatal.message.removeprefix("kept the original prompt: ") if fatal else "not every row was rewritten"
        if not finished:
            part.unlink(missing_ok=True)
        print(f"nava-rewrite: stopped: {why}. {len(finished)} of {len(rows)} row(s) are saved in {part}; "
              "fix the problem and run the same command again to continue", file=sys.stderr)
        return 3
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(_jsonl(finished[r.line]))
    tmp.replace(out)
    part.unlink(missing_ok=True)
    failed = sum(1 for obj in finished.values() if obj.get("rewrite_status") != STATUS_OK)
    print(f"nava-rewrite: {len(rows) - failed} of {len(rows)} row(s) rewritten"
          + (f"; {failed} kept their original prompt (rewrite_status 'failed')" if failed else "")
          + f" -> {out}", file=sys.stderr)
    return 1 if failed else 0


def _lines_in(path: Path) -> set[int]:
    lines: set[int] = set()
    if path.is_file():
        for raw in path.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("line"), int):
                lines.add(obj["line"])
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
