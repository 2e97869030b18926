"""Packaging: the wheel carries everything an install needs, and its console scripts work.

The wheel is built from a copy of the sources (so parallel builds never share `build/`), installed
into a fresh virtual environment that borrows this environment's third-party packages through a
`.pth` line (fast: nothing is downloaded), and every check runs from a temporary working directory
so the source tree cannot be imported by accident. A slow variant installs into a fully clean venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "app", "nava_core", "prompt_builder", "presets")
PROJECT_PRESETS = sorted(p.stem for p in (ROOT / "presets" / "projects").glob("*.json"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=ignore)
        else:
            shutil.copy2(p, src / name)
    dist = tmp / "dist"
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."],
             cwd=src)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list(dist.glob("nava_studio-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def venv_site(venv: Path) -> Path:
    r = _run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
             cwd=venv)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip())


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """The wheel installed into a new venv whose third-party packages come from this one."""
    tmp = tmp_path_factory.mktemp("packaging")
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    assert r.returncode == 0, r.stderr
    deps = sysconfig.get_paths()["purelib"]  # this venv's site-packages: torch, gradio, ... (appended last)
    (venv_site(venv) / "_nava_test_deps.pth").write_text(deps + "\n")
    r = _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
              "--ignore-installed", "--no-index", str(wheel)], cwd=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp / "work"  # the cwd of every command: no source tree in sight
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "bin": venv / "bin", "work": work, "tmp": tmp}


def test_wheel_holds_the_packages_data_presets_and_entry_points(installed):
    with zipfile.ZipFile(installed["wheel"]) as zf:
        names = set(zf.namelist())
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = zf.read(entry).decode()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for pkg in ("app", "nava_core", "prompt_builder", "nava_core/weights", "nava_core/model", "nava_core/components"):
        assert f"{pkg}/__init__.py" in names, pkg
    assert "nava_core/data/negative_prompts.json" in names
    shipped = sorted(Path(n).stem for n in names if n.startswith("presets/projects/") and n.endswith(".json"))
    assert shipped == PROJECT_PRESETS and shipped
    for kind in ("camera", "sound", "style"):
        assert any(n.startswith(f"presets/partials/{kind}/") for n in names), kind
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    assert "nava-studio = app.cli:main" in entry_points and "nava-render = nava_core.cli:main" in entry_points
    for extra, pkgs in {"gpu": ("flash-attn", "bitsandbytes"),
                        "dev": ("pytest", "pytest-timeout", "playwright", "spaces", "import-linter")}.items():
        assert f"Provides-Extra: {extra}" in meta
        for pkg in pkgs:
            assert any(line.startswith(f"Requires-Dist: {pkg}") and f'extra == "{extra}"' in line
                       for line in meta.splitlines()), (extra, pkg)


def test_installed_code_comes_from_the_wheel_and_finds_its_presets(installed):
    code = (
        "import json, app, app.cli, nava_core, nava_core.cli, prompt_builder as pb, pathlib\n"
        "from prompt_builder.presets import PRESETS_DIR\n"
        "print(json.dumps({'files': [m.__file__ for m in (app, nava_core, prompt_builder_mod)],\n"
        "  'presets': pb.list_presets(), 'dir': str(PRESETS_DIR),\n"
        "  'partials': {k: len(pb.list_partials(k)) for k in ('camera', 'sound', 'style')},\n"
        "  'loaded': pb.load_preset(pb.list_presets()[0]).title,\n"
        "  'negative': (pathlib.Path(nava_core.__file__).parent / 'data' / 'negative_prompts.json').is_file()}))\n"
    ).replace("prompt_builder_mod", "pb")
    r = _run([str(installed["bin"] / "python"), "-c", code], cwd=installed["work"])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    venv = installed["venv"].resolve()
    for f in out["files"]:
        assert venv in Path(f).resolve().parents, f"{f} is not the installed copy"
    assert venv in Path(out["dir"]).resolve().parents
    assert out["presets"] == PROJECT_PRESETS
    assert all(n > 0 for n in out["partials"].values()) and out["loaded"]
    assert out["negative"]


def _options(parser) -> list[tuple[str, str | None]]:
    return [(a.option_strings[-1] if a.option_strings else a.dest, a.help) for a in parser._actions]


def test_console_scripts_document_every_option(installed):
    from app.cli import build_parser as studio_parser
    from nava_core.cli import build_parser as render_parser

    for cmd, parser in (([str(installed["bin"] / "nava-studio"), "--help"], studio_parser()),
                        ([str(installed["bin"] / "nava-render"), "--help"], render_parser()),
                        ([str(installed["bin"] / "python"), "-m", "nava_core.cli", "--help"], render_parser())):
        r = _run(cmd, cwd=installed["work"], timeout=120)
        assert r.returncode == 0, (cmd, r.stderr)
        text = " ".join(r.stdout.split())
        for option, help_text in _options(parser):
            assert help_text, f"{cmd[-2]}: option {option} has no help text"
            assert option in r.stdout, f"{option} missing from {' '.join(cmd)}"
            if option != "help":
                assert " ".join(help_text.split())[:30] in text, (option, help_text)


def _tiny_request(path: Path) -> Path:
    path.write_text(json.dumps({"prompt": "A man at a desk says <S>Hello there.<E> Soft room tone, no music.",
                                "width": 160, "height": 96, "seconds": 0.5, "steps": 2, "seed": 3}))
    return path


def _check_mp4(stdout: str, out_dir: Path) -> None:
    from nava_core.export import probe, read_request

    mp4 = Path(stdout.strip().splitlines()[-1])
    assert mp4.suffix == ".mp4" and mp4.is_file() and out_dir.resolve() in mp4.resolve().parents, stdout
    info = probe(mp4)
    assert (info.video_codec, info.width, info.height) == ("h264", 160, 96)
    assert info.audio_codec == "aac" and info.channels == 2 and info.frames == 13  # 0.5 s -> T=4 -> 13 frames
    assert json.loads(read_request(mp4))["steps"] == 2


# ~10 s on an idle 2-core machine (torch/diffusers import + a 2-step tiny render), ~45 s when the cores are busy
def test_installed_nava_render_writes_an_mp4(installed, tiny_weights):
    req = _tiny_request(installed["work"] / "request.json")
    out = installed["tmp"] / "renders"
    r = _run([str(installed["bin"] / "nava-render"), str(req), "--weights", str(tiny_weights), "--out", str(out), "-q"],
             cwd=installed["work"], timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    _check_mp4(r.stdout, out)


@pytest.mark.slow  # a fully clean venv: torch==2.13.0 (local CPU wheel) + the wheel and its deps from the index
@pytest.mark.timeout(1800)
def test_clean_venv_pip_install_of_the_wheel_renders(tmp_path, tiny_weights):
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "clean"
    r = _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    r = _run(pip + ["torch==2.13.0"], cwd=tmp_path, timeout=900)  # never unpinned: that pulls CUDA wheels
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run(pip + [str(wheel)], cwd=tmp_path, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp_path / "work"
    work.mkdir()
    r = _run([str(venv / "bin" / "nava-studio"), "--help"], cwd=work)
    assert r.returncode == 0 and "--weights" in r.stdout, r.stderr
    req = _tiny_request(work / "request.json")
    r = _run([str(venv / "bin" / "nava-render"), str(req), "--weights", str(tiny_weights), "--out", str(tmp_path / "o"),
              "-q"], cwd=work, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    _check_mp4(r.stdout, tmp_path / "o")
