"""`nava-render` and its batch runner: a bad output folder (a file in the way, read-only, disk full) is
one line `nava-render: ...` with exit code 3, no traceback, and an interrupted batch job is queued
again (never left "running", never recorded as failed), so a re-run resumes it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nava_core.jobs import INCOMING_DIR, JobQueue, run_one
from nava_core.outdir import OutputFolderError
from nava_core.cli import main

REQ = {"prompt": "A man in a red coat says <S>Hello there.<E> Wind blows.", "width": 160, "height": 96,
       "seconds": 0.5, "steps": 2, "seed": 1}
REPO = Path(__file__).resolve().parents[1]


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("nava-render:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.fixture()
def request_file(tmp_path: Path) -> Path:
    p = tmp_path / "req.json"
    p.write_text(json.dumps(REQ), encoding="utf-8")
    return p


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    """A tiny tmpfs (root only): a real full disk or a real read-only file system."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_out_below_a_regular_file_is_one_line_exit_3(request_file: Path, tmp_path: Path, capsys, refused) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = main([str(request_file), "--weights", "tiny", "--out", str(blocker / "out"), "-q"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 3 and "is not a folder" in line and str(blocker) in line, line
    refused("cli-out-below-a-file", line)


def test_out_is_a_regular_file_is_one_line_exit_3(request_file: Path, tmp_path: Path, capsys, refused) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = main([str(request_file), "--weights", "tiny", "--out", str(blocker), "-q"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 3 and "a file with that name exists" in line, line
    assert blocker.read_text() == "x"
    refused("cli-out-is-a-file", line)


def test_read_only_out_is_one_line_exit_3(request_file: Path, tmp_path: Path, capsys, refused) -> None:
    ro = tmp_path / "ro"
    if os.geteuid() != 0:
        ro.mkdir()
        ro.chmod(0o500)
        ctx = contextlib.nullcontext(ro)
    else:  # root ignores permission bits: a read-only file system is the real thing
        ctx = _tmpfs(ro, "ro,size=64k")
    with ctx:
        rc = main([str(request_file), "--weights", "tiny", "--out", str(ro / "out"), "-q"])
        line = _one_line(capsys.readouterr().err)
    assert rc == 3 and ("read-only" in line or "not writable" in line), line
    refused("cli-out-read-only", line)


def test_disk_full_while_writing_is_one_line_exit_3(request_file: Path, tmp_path: Path, tiny_weights: Path,
                                                    refused) -> None:
    """A real render into a 64 KB file system: the outputs do not fit (ENOSPC); nothing half-written stays."""
    with _tmpfs(tmp_path / "small", "size=64k") as small:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        r = subprocess.run([sys.executable, "-m", "nava_core.cli", str(request_file), "--weights", str(tiny_weights),
                            "--out", str(small / "out"), "-q"], capture_output=True, text=True, env=env, timeout=300)
        line = _one_line(r.stderr)
        assert r.returncode == 3 and "full disk" in line, r.stderr[-3000:]
        assert not [p for p in (small / "out").rglob("*") if p.is_file()], "a partial output was left behind"
    refused("cli-disk-full", line)


def test_batch_with_incoming_blocked_requeues_the_job(tmp_path: Path, tiny_weights: Path, capsys, refused) -> None:
    """`<out>/.incoming` is a file: exit 3, one line, the job is queued again; fixing the folder resumes it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / INCOMING_DIR).write_text("in the way")
    batch = tmp_path / "b.json"
    # 1 s: the batch lints each item first (nava_core.preflight), and "Hello there." needs about 1 s
    batch.write_text(json.dumps({"name": "blocked", "items": [{"request": {**REQ, "seconds": 1.0}}]}), encoding="utf-8")
    argv = ["batch", str(batch), "--weights", str(tiny_weights), "--out", str(out), "-q"]
    rc = main(argv)
    line = _one_line(capsys.readouterr().err)
    assert rc == 3 and "queued again" in line, line
    with JobQueue(out / "queue.sqlite") as q:
        jobs = q.list()
        assert [j.state for j in jobs] == ["queued"] and jobs[0].attempts == 0
    refused("batch-incoming-blocked", line)
    (out / INCOMING_DIR).unlink()
    assert main(argv) == 0
    with JobQueue(out / "queue.sqlite") as q:
        assert [j.state for j in q.list()] == ["done"]


def test_run_one_puts_a_job_back_when_the_disk_fills(tmp_path: Path) -> None:
    """The render itself hits ENOSPC: the job is queued again with the reason noted, its attempt not counted."""
    with JobQueue(tmp_path / "q.sqlite") as q:
        q.enqueue(REQ, batch_id="b", label="one")
        job = q.claim()

        def full_disk(request, tmp_dir, progress, cancel):  # what write_mp4 raises on a full disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_dir / "clip.mp4"))

        with pytest.raises(OutputFolderError, match="full disk"):
            run_one(q, job, full_disk, tmp_path / "out", requeue_on_output_error=True)
        again = q.get(job.id)
        assert again.state == "queued" and again.attempts == 0 and "full disk" in again.error
        assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
