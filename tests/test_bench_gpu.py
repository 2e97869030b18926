"""bench/gpu.py runs end to end on the CPU with the tiny backbone (the CI smoke run of the GPU bench):
every phase produces its rows and the summary table is printed; a spent time budget starts nothing
but still prints the table. The numbers themselves are not asserted (it is a benchmark)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config", "tiny", "--frames", "2", "--latent-hw", "6", "10", "--text-tokens", "16", "--repeats", "1",
        "--compile-backend", "aot_eager"]


def _run(args: list[str], tmp_path: Path, timeout: int) -> tuple[str, dict]:
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_spent_budget_starts_no_phase_but_prints_the_table(tmp_path) -> None:
    stdout, data = _run([*TINY, "--budget-s", "0"], tmp_path, 120)
    assert data["rows"] == []
    assert "not started (time budget): profile resident" in stdout
    assert "VAE decode" in stdout  # listed among the phases not started


@pytest.mark.slow
def test_tiny_bench_runs_every_phase_on_cpu(tmp_path) -> None:
    stdout, data = _run([*TINY, "--budget-s", "300"], tmp_path, 600)
    phases = {r["phase"] for r in data["rows"]}
    assert "error" not in phases, [r for r in data["rows"] if r["phase"] == "error"]
    assert phases == {"profile", "diffusers", "kernel_split", "compile", "vae_decode"}
    profiles = {r["profile"] for r in data["rows"] if r["phase"] == "profile"}
    assert profiles == {"resident", "fp8", "fp8_compute", "group_offload"}
    for r in data["rows"]:
        if r["phase"] == "profile":
            assert r["s_per_forward"] > 0 and r["s_per_step"] > 0 and r["forwards_per_step"] == 3
    split = next(r for r in data["rows"] if r["phase"] == "kernel_split")
    assert abs(sum(split[f"{k}_pct"] for k in ("matmul", "attention", "rope", "elementwise", "copies")) - 100) < 1e-6
    assert split["matmul_s"] > 0 and split["attention_s"] > 0 and split["rope_s"] > 0
    assert "NAVA / diffusers =" in stdout and "s/forward" in stdout
