"""The architecture as checked contracts: import-linter's layers, forbidden imports and no cycles
(pyproject.toml [tool.importlinter]), and the light entry points that must answer without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
HEAVY = ("torch", "diffusers", "transformers", "gradio", "av", "accelerate")


def _lint(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_import_contracts_hold() -> None:
    """prompt_builder imports neither torch nor nava_core; nava_core neither gradio nor app; the engine
    layers follow the data flow; the studio reaches the engine through app.engine only; no two sibling
    modules import each other, at any depth."""
    out = _lint(REPO)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "5 kept, 0 broken" in out.stdout


def test_a_cycle_breaks_the_contract(tmp_path: Path) -> None:
    """The acyclic contract really fails on a cycle (so a new one in the tree fails the suite)."""
    pkg = tmp_path / "loopy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from loopy import b\n")
    (pkg / "b.py").write_text("def f():\n    from loopy import a  # a lazy import is a cycle all the same\n")
    (tmp_path / ".importlinter").write_text(textwrap.dedent("""\
        [importlinter]
        root_package = loopy

        [importlinter:contract:acyclic]
        name = no cycles
        type = acyclic_siblings
        ancestors = loopy
        """))
    out = _lint(tmp_path, str(tmp_path / ".importlinter"))
    assert out.returncode == 1 and "no cycles BROKEN" in out.stdout, out.stdout[-2000:]


def test_help_validation_refusals_and_estimates_import_no_torch(tmp_path: Path) -> None:
    """`nava-render --help`, request checks, a refused request file and the estimator stay torch-free."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"prompt": "x", "memory_profile": "turbo"}))
    code = textwrap.dedent(f"""\
        import contextlib, io, json, sys
        from nava_core.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as help_text:
            try:
                main(["--help"])
            except SystemExit as e:
                assert e.code == 0
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main([{str(bad)!r}])
        from nava_core.estimate import estimate
        from nava_core.request import RenderRequest
        from nava_core.validation import check_request_dict
        check_request_dict({{"prompt": "a <S>hi<E>", "seconds": 2.0}})
        est = estimate(RenderRequest(prompt="x"), gpus=1)
        print(json.dumps({{"help": "nava-render" in help_text.getvalue(), "code": code, "err": err.getvalue(),
                          "estimate": est.total_seconds > 0,
                          "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
        """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["help"] and got["estimate"]
    assert got["code"] == 2 and "unknown memory profile 'turbo'; choose one of auto, resident" in got["err"]
    assert got["heavy"] == []
