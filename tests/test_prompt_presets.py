"""Shipped presets, partial presets, and .nava.zip bundles (round trip and refusals)."""

from __future__ import annotations

import json
import shutil
import wave
import zipfile
from pathlib import Path

import pytest

from prompt_builder import (MODES, PRESETS_DIR, BundleError, CastMember, Project, apply_partial, compile_project,
                            lint_project, list_partials, list_presets, load_bundle, load_partial, load_preset,
                            save_bundle)
from prompt_builder.bundle import sniff_ok

REQUIRED = {"two_person_dialogue", "single_speaker_to_camera", "silent_action_effects", "music_performance",
            "portrait_vlog", "square_product", "audio_only_voice"}
REPO = Path(__file__).parent.parent


def test_required_presets_ship_and_validate() -> None:
    names = set(list_presets())
    assert REQUIRED <= names
    for name in names:
        p = load_preset(name)
        assert p.mode in MODES and p.seconds > 0
        assert lint_project(p) == [], name  # shipped presets are clean: no findings at all, not even no-voice
    assert load_preset("audio_only_voice").mode == "audio"
    portrait, square = load_preset("portrait_vlog"), load_preset("square_product")
    assert portrait.height > portrait.width and square.height == square.width
    assert compile_project(load_preset("two_person_dialogue")).text.count("<S>") == 2
    assert "<S>" not in compile_project(load_preset("silent_action_effects")).text
    assert "music" in compile_project(load_preset("music_performance")).text.lower()
    assert any(load_preset(n).mode == "image_audio_video" for n in names)


def _stored(name: str) -> dict:
    return json.loads((PRESETS_DIR / "projects" / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list_presets())
def test_shipped_preset_media_exist_and_pass_the_input_checks(name: str) -> None:
    from nava_core.validation import check_audio_file, check_image_file

    data = _stored(name)
    spoken = {b["speaker"] for b in data["timeline"] if b["kind"] == "line"}
    assert {c["id"] for c in data["cast"]} == spoken
    for member in data["cast"]:  # every speaker has a voice, named relative to the repository root
        assert member["voice_file"].startswith("assets/voices/"), member
        info = check_audio_file(REPO / member["voice_file"], max_seconds=10)
        assert info.duration_s >= 3.0
    if data["mode"] == "image_audio_video":
        assert data["image"].startswith("assets/images/")
        img = check_image_file(REPO / data["image"])
        assert (img.width, img.height) == (data["width"], data["height"])
    else:
        assert data["image"] == ""


def test_preset_media_resolve_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # at the repository root the stored relative paths already resolve: kept as written
    here = load_preset("cafe_first_frame")
    assert here.image == "assets/images/cafe_two_people.png" and Path(here.image).is_file()
    monkeypatch.chdir(tmp_path)  # anywhere else (the studio, a batch, a wheel install): absolute
    for name in list_presets():
        p = load_preset(name)
        for path in [m.voice_file for m in p.cast] + ([p.image] if p.image else []):
            assert Path(path).is_absolute() and Path(path).is_file(), (name, path)
            assert Path(path).resolve().is_relative_to(REPO)
    assert compile_project(load_preset("two_person_dialogue")).voices == [
        str(REPO / "assets/voices/walt_en.wav"), str(REPO / "assets/voices/sam_en.wav")]


def test_wheel_layout_resolves_media_beside_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed wheel puts presets/ and assets/ side by side in site-packages: paths resolve there."""
    site = tmp_path / "site-packages"
    shutil.copytree(PRESETS_DIR, site / "presets")
    shutil.copytree(REPO / "assets", site / "assets")
    monkeypatch.chdir(tmp_path)
    p = load_preset("zh_two_person_dialogue", root=site / "presets")
    assert [m.voice_file for m in p.cast] == [str(site.resolve() / "assets/voices/wei_zh.wav"),
                                              str(site.resolve() / "assets/voices/jun_zh.wav")]
    missing = load_preset("portrait_vlog", root=site / "presets")
    (site / "assets/voices/mia_en.wav").unlink()  # a file not found under the root is left as written
    assert load_preset("portrait_vlog", root=site / "presets").cast[0].voice_file == "assets/voices/mia_en.wav"
    assert Path(missing.cast[0].voice_file).is_absolute()


def test_preset_names_are_checked() -> None:
    with pytest.raises(ValueError, match="bad preset name"):
        load_preset("../secrets")
    with pytest.raises(FileNotFoundError):
        load_preset("does_not_exist")


def test_partials_merge_only_their_section() -> None:
    for kind in ("camera", "sound", "style"):
        assert list_partials(kind), kind
    base = load_preset("two_person_dialogue")
    push = load_partial("camera", "slow_push_in")
    merged = apply_partial(base, push)
    assert merged.camera.movement == push.values["movement"]
    assert merged.camera.angle == base.camera.angle  # untouched field kept
    assert merged.timeline == base.timeline and merged.audio == base.audio
    assert base.camera.movement != merged.camera.movement  # base not mutated
    noir = apply_partial(base, {"kind": "style", "values": {"style": "film noir"}})
    assert noir.scene.style == "film noir" and "film noir" in compile_project(noir).text
    with pytest.raises(ValueError, match="unknown field"):
        apply_partial(base, {"kind": "camera", "values": {"music": "x"}})


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(range(256)) * 40)
    return path


def _media_project(tmp: Path) -> Project:
    _wav(tmp / "ann.wav")
    (tmp / "frame.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    p = load_preset("two_person_dialogue")
    p.mode = "image_audio_video"
    p.image = "frame.png"
    p.cast[0].voice_file = "ann.wav"
    p.cast[1].voice_file = str(tmp / "ann.wav")  # same file by absolute path
    return p


def test_bundle_round_trip_is_byte_exact(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    project = _media_project(src)
    bundle = save_bundle(project, tmp_path / "scene.nava.zip", base_dir=src)
    loaded = load_bundle(bundle, tmp_path / "out")
    assert Path(loaded.image).read_bytes() == (src / "frame.png").read_bytes()
    for member in loaded.cast:
        assert Path(member.voice_file).read_bytes() == (src / "ann.wav").read_bytes()
        assert Path(member.voice_file).is_relative_to(tmp_path / "out")
    strip = lambda p: {**p.to_dict(), "image": "", "cast": [{**c, "voice_file": ""} for c in p.to_dict()["cast"]]}
    assert strip(loaded) == strip(project)
    assert compile_project(loaded).text == compile_project(project).text
    # deterministic archive: same project -> same bytes
    again = save_bundle(project, tmp_path / "again.nava.zip", base_dir=src)
    assert again.read_bytes() == bundle.read_bytes()


def _bundle_with(tmp: Path, name: str, data: bytes, mode: int | None = None, project: dict | None = None) -> Path:
    proj = project or Project(cast=[CastMember("a", "A", "", name)]).to_dict()
    path = tmp / "bad.nava.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("project.json", json.dumps(proj))
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize("name,data,mode,match", [
    ("../evil.wav", b"RIFF\0\0\0\0WAVEfmt ", None, "escapes"),
    ("voices/../../evil.wav", b"RIFF\0\0\0\0WAVEfmt ", None, "escapes"),
    ("/etc/evil.wav", b"RIFF\0\0\0\0WAVEfmt ", None, "absolute"),
    ("voices/link.wav", b"/etc/passwd", 0o120777, "symbolic link"),
    ("voices/fake.wav", b"MZ\x90\0 this is an exe", None, "not a real .wav"),
    ("voices/fake.mp3", b"<html>hello</html>", None, "not a real .mp3"),
    ("image/fake.png", b"\xff\xd8\xff jpeg bytes", None, "not a real .png"),
    ("voices/run.sh", b"#!/bin/sh", None, "unexpected member"),
    ("voices/bomb.wav", b"RIFF\0\0\0\0WAVE" + bytes(4 * 1024 * 1024), None, "zip bomb"),
])
def test_bundle_refusals(tmp_path: Path, name: str, data: bytes, mode: int | None, match: str) -> None:
    path = _bundle_with(tmp_path, name, data, mode)
    with pytest.raises(BundleError, match=match):
        load_bundle(path, tmp_path / "out")
    assert not (tmp_path / "evil.wav").exists() and not (tmp_path / "out" / "voices").exists()


def test_bundle_refuses_oversized_and_unknown_version(tmp_path: Path) -> None:
    big = _bundle_with(tmp_path, "voices/big.wav", b"RIFF\0\0\0\0WAVE" + bytes(65 * 1024 * 1024))
    with pytest.raises(BundleError, match="limit"):
        load_bundle(big, tmp_path / "out")
    data = Project().to_dict()
    data["version"] = 99
    future = _bundle_with(tmp_path, "voices/a.wav", _wav(tmp_path / "a.wav").read_bytes(), project=data)
    with pytest.raises(BundleError, match="unsupported project version"):
        load_bundle(future, tmp_path / "out")
    with pytest.raises(BundleError, match="not a readable bundle"):
        (tmp_path / "junk.nava.zip").write_bytes(b"not a zip")
        load_bundle(tmp_path / "junk.nava.zip", tmp_path / "out")


def test_save_refuses_disguised_media(tmp_path: Path) -> None:
    (tmp_path / "voice.wav").write_bytes(b"ID3 actually an mp3")
    p = Project(cast=[CastMember("a", "A", "", "voice.wav")])
    with pytest.raises(BundleError, match="do not look like"):
        save_bundle(p, tmp_path / "x.nava.zip", base_dir=tmp_path)


@pytest.mark.parametrize("name,head", [
    ("a.wav", b"RIFF\x24\0\0\0WAVEfmt "), ("a.mp3", b"ID3\x04\0\0\0\0\0\0"), ("a.mp3", b"\xff\xfb\x90\x00"),
    ("a.ogg", b"OggS\0\x02"), ("a.flac", b"fLaC\0\0\0\x22"), ("a.m4a", b"\0\0\0\x20ftypM4A "),
    ("a.png", b"\x89PNG\r\n\x1a\n\0"), ("a.jpg", b"\xff\xd8\xff\xe0"), ("a.webp", b"RIFF\0\0\0\0WEBPVP8 "),
])
def test_sniff_accepts_real_magic(name: str, head: bytes) -> None:
    assert sniff_ok(name, head)
    assert not sniff_ok(name, b"\0" * 16)
