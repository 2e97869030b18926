"""Process start-up cost of `nava-render`, before vs after: `--help`, and process start to the first
denoising step of a tiny CLI render, for a BEFORE tree (a base commit) and the current tree, in one run.

Run: `python bench/startup.py [--base 2f8c745] [--runs 3]`. Prints medians and after/before ratios
(below 1: faster now); not a test. Both trees render the same request on the same tiny weight set
(built once from the current tree), one thread, alternating BEFORE/AFTER so machine load hits both.
"first step" is when the CLI's progress bar first shows step 1 of the denoising loop.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a queue.py: keep this folder off sys.path so `import queue` (torch needs it) is the stdlib's
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import os
import re
import select
import statistics
import subprocess
import tempfile
import time

REPO = Path(__file__).resolve().parent.parent
FIRST_STEP = re.compile(rb"denoising[^\n\r]*?\b1/\d+")


def tree_at(base: str, dest: Path) -> Path:
    """The files of commit `base` (git archive), without touching the current checkout."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", base], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def entry(tree: Path) -> str:
    """The module that runs nava-render in `tree` (nava_core.cli now; nava_core.render before the split)."""
    return "nava_core.cli" if (tree / "nava_core" / "cli.py").is_file() else "nava_core.render"


def env_for(tree: Path, home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "NAVA_STUDIO_HOME": str(home)}


def help_seconds(tree: Path, home: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", entry(tree), "--help"], cwd=tree, env=env_for(tree, home),
                   check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t0


def first_step_seconds(tree: Path, home: Path, request: Path, weights: Path, out: Path,
                       timeout_s: float = 600.0) -> float:
    """Seconds from spawning `nava-render request --weights tiny` to its first finished denoising step;
    the process is stopped there (what follows is not measured)."""
    cmd = [sys.executable, "-m", entry(tree), str(request), "--weights", str(weights), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env_for(tree, home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    seen = b""
    try:
        while time.perf_counter() - t0 < timeout_s:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            seen = (seen + chunk)[-4096:]
            if FIRST_STEP.search(seen):
                return time.perf_counter() - t0
        raise RuntimeError(f"{' '.join(cmd)} never reached a denoising step; last output:\n"
                           f"{seen.decode(errors='replace')}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="2f8c745", help="commit of the BEFORE tree (default: before issue 13's work)")
    p.add_argument("--runs", type=int, default=3, help="runs per tree and measurement (medians are printed)")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    from nava_core.request import RenderRequest
    from nava_core.weights.tiny import build_tiny_weight_set

    with tempfile.TemporaryDirectory(prefix="nava-startup-") as tmp:
        tmp_path = Path(tmp)
        trees = {"before": tree_at(args.base, tmp_path / "before"), "after": REPO}
        entries = {name: entry(tree) for name, tree in trees.items()}
        weights = build_tiny_weight_set(tmp_path / "tiny")
        request = tmp_path / "request.json"
        request.write_text(RenderRequest(prompt="a dog barks <S>woof<E>", width=160, height=96, seconds=0.5,
                                         steps=2, precision="fp32").to_json(), encoding="utf-8")
        results: dict[str, dict[str, list[float]]] = {k: {"help": [], "first_step": []} for k in trees}
        for i in range(args.runs):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for name in order:
                home = tmp_path / f"home-{name}"
                results[name]["help"].append(help_seconds(trees[name], home))
                results[name]["first_step"].append(
                    first_step_seconds(trees[name], home, request, weights, tmp_path / f"out-{name}"))
                print(f"run {i + 1}/{args.runs} {name:6s}: --help {results[name]['help'][-1]:.2f} s, "
                      f"first denoising step {results[name]['first_step'][-1]:.2f} s", flush=True)
    print(f"\nBEFORE = {args.base} (python -m {entries['before']}), AFTER = working tree "
          f"(python -m {entries['after']}); medians of {args.runs} runs")
    for what, label in (("help", "nava-render --help"), ("first_step", "start -> first denoising step")):
        before = statistics.median(results["before"][what])
        after = statistics.median(results["after"][what])
        print(f"{label:32s} before {before:7.2f} s  after {after:7.2f} s  ratio after/before {after / before:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
