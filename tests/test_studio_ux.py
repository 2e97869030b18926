"""Issue 14 pieces that need no browser: Model-tab wording and buttons, builder row merging."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_model_tab_download_error_is_plain_and_use_is_not_primary_for_an_incomplete_folder(tmp_path: Path,
                                                                                          monkeypatch) -> None:
    from nava_core.weights import download
    from app.model_tab import button_variants, error_box

    use, dl = button_variants(str(tmp_path / "empty"))
    assert use["variant"] == "secondary" and dl["variant"] == "primary"

    def offline(**_kw):
        raise OSError("LocalEntryNotFoundError: ConnectError [Errno -3]")

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(download.HubUnreachableError) as err:
        download.download_weights(tmp_path / "w")
    box = error_box(str(err.value))
    assert "cannot reach the Hugging Face Hub" in box and "press Download again" in box
    assert "LocalEntryNotFoundError" not in box and "ConnectError" not in box


def test_merge_rows_lays_complete_field_values_over_the_state() -> None:
    from app.studio_rows import BEAT_FIELDS, CAST_FIELDS, MAX_BEATS, MAX_CAST, merge_rows

    beats = [{"kind": "line", "text": "old", "speaker": "A", "pause": 0.7,
              "delivery": {"emotion": "", "rate": "normal", "volume": "loud"}, "seconds": 0.0}]
    cast = [{"id": "A", "name": "", "voice": "", "voice_file": "/v/mia.wav"}]
    values = [None] * (MAX_BEATS * BEAT_FIELDS + MAX_CAST * CAST_FIELDS)
    values[:5] = ["line", "A", "I am annoyed", "annoyed", "fast"]
    base = MAX_BEATS * BEAT_FIELDS
    values[base:base + 3] = ["A", "Mia", "bright"]
    b, c = merge_rows(beats, cast, values)
    assert b[0]["text"] == "I am annoyed" and b[0]["delivery"] == {"emotion": "annoyed", "rate": "fast",
                                                                    "volume": "loud"}
    assert b[0]["pause"] == 0.7 and c[0] == {"id": "A", "name": "Mia", "voice": "bright", "voice_file": "/v/mia.wav"}
    assert beats[0]["text"] == "old"  # the state itself is never mutated


def test_timeline_lanes_are_labelled_with_cast_names() -> None:
    from app import builder as B
    from app.timeline_view import timeline_html

    project = B.default_state()["project"]  # cast A = Mia, B = Tom
    page = timeline_html(project, 6.0)
    assert '<span class="nava-lane-label" title="Mia (speaker A)">Mia</span>' in page
    assert ">Tom</span>" in page and ">A</span>" not in page


def test_autosave_round_trip_and_newest_wins(tmp_path: Path) -> None:
    from app import autosave as A
    from app import builder as B

    state = B.default_state()
    voice = tmp_path / "mia.wav"
    voice.write_bytes(b"RIFF")
    state["project"]["cast"][0]["voice_file"] = str(voice)
    state["project"]["cast"][1]["voice_file"] = str(tmp_path / "gone.wav")
    assert A.load(tmp_path) is None
    A.save(tmp_path, A.envelope(state, "two_person_dialogue"))
    back = A.load(tmp_path)
    assert back["state"] == state and back["preset"] == "two_person_dialogue"
    older = dict(back, saved_at=back["saved_at"] - 10)
    assert A.newest(older, back, {"junk": 1}, None) is back
    fixed, notes = A.missing_media(back["state"])
    assert fixed["project"]["cast"][0]["voice_file"] == str(voice)
    assert fixed["project"]["cast"][1]["voice_file"] == "" and "gone.wav" in notes[0]
    A.autosave_path(tmp_path).write_text("{not json")
    assert A.load(tmp_path) is None


def test_a_request_restored_from_its_state_renders_as_the_same_request() -> None:
    """MP4 drop -> builder state -> the request the engine renders: byte for byte the embedded one."""
    from app import builder as B
    from app import engine as E

    choice = E.WeightChoice("tiny", "tiny", "test")
    state = B.default_state()
    state["settings"]["steps"] = 4
    state["settings"]["seed"] = 77
    original = E.adapt_for_engine(B.request_from_state(state), choice)
    again = E.adapt_for_engine(B.request_from_state(B.state_from_request(original)), choice)
    assert again.to_json() == original.to_json()


def test_history_search_and_delete(tmp_path: Path) -> None:
    from nava_core.jobs import JobQueue
    from nava_core.request import RenderRequest
    from app.history import HistoryView

    q = JobQueue(tmp_path / "jobs.sqlite")
    a = q.enqueue(RenderRequest(prompt="Rain on a tin roof.", mode="audio", seconds=1.0, title="rain"), source="studio")
    b = q.enqueue(RenderRequest(prompt="A cat meows.", mode="audio", seconds=1.0, title="cat"), source="batch",
                  batch_id="b1", label="seed=1")
    view = HistoryView(q)
    assert [j.id for j in view.search("tin roof")] == [a]
    assert [j.id for j in view.search("seed=1 cat")] == [b]
    assert {j.id for j in view.search("")} == {a, b}
    assert "not a finished render" in view.delete(a, tmp_path)  # waiting: cancelled, never deleted
    q.cancel(a)
    assert "removed" in view.delete(a, tmp_path) and view.get(a) is None
    q.close()
