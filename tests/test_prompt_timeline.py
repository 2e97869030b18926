"""Timeline estimates and edits, and subtitles that standard readers accept."""

from __future__ import annotations

import io

import pytest
import srt
import webvtt

from prompt_builder import (Beat, CastMember, Delivery, Project, compile_project, estimate_timeline,
                            load_preset, move_line, reassign_line, retime_line, to_srt, to_vtt)


def _project() -> Project:
    return Project(
        seconds=10.0,
        timeline=[Beat("action", "They sit", seconds=1.0),
                  Beat("line", "Good morning to you.", "a"),
                  Beat("line", "Morning.", "b", Delivery(rate="slow"), pause=0.5),
                  Beat("line", "你好，朋友。", "a")],
        cast=[CastMember("a", "Ann", "", "a.wav"), CastMember("b", "Bob", "", "")],
    )


def test_timeline_estimates_are_ordered() -> None:
    lines = estimate_timeline(_project())
    assert [t.beat_index for t in lines] == [1, 2, 3]
    assert lines[0].start == pytest.approx(1.0)  # after the timed action
    assert lines[1].start == pytest.approx(lines[0].end + 0.5)  # pause before it
    for prev, cur in zip(lines, lines[1:]):
        assert prev.start < prev.end <= cur.start
    slow = estimate_timeline(retime_line(_project(), 2, rate="fast"))[1]
    assert (slow.end - slow.start) < (lines[1].end - lines[1].start)


def test_edits_return_new_projects_and_move_voices() -> None:
    p = _project()
    moved = move_line(p, 2, 1)
    assert compile_project(moved).voices == [None, "a.wav", "a.wav"]
    assert compile_project(p).voices == ["a.wav", None, "a.wav"]  # original untouched
    swapped = reassign_line(p, 1, "b")
    assert compile_project(swapped).span_speakers == ["b", "b", "a"]
    with pytest.raises(ValueError, match="not in the cast"):
        reassign_line(p, 1, "zed")
    with pytest.raises(ValueError, match="action"):
        reassign_line(p, 0, "b")
    with pytest.raises(IndexError):
        move_line(p, 0, 9)


def test_retime_to_start() -> None:
    p = retime_line(_project(), 3, start=6.0)
    assert estimate_timeline(p)[2].start == pytest.approx(6.0, abs=1e-3)
    with pytest.raises(ValueError, match="cannot start before"):
        retime_line(_project(), 3, start=0.2)


@pytest.mark.parametrize("project", [_project(), load_preset("two_person_dialogue"), load_preset("zh_single_speaker")])
def test_srt_and_vtt_parse_and_are_monotonic(project: Project) -> None:
    timed = estimate_timeline(project)
    subs = list(srt.parse(to_srt(project)))
    assert len(subs) == len(timed)
    assert [s.content.split(": ", 1)[1] for s in subs] == [t.text for t in timed]
    for s, t in zip(subs, timed):
        assert s.start.total_seconds() == pytest.approx(t.start, abs=1e-3)
    starts = [s.start for s in subs]
    assert starts == sorted(starts) and all(s.start < s.end for s in subs)
    for a, b in zip(subs, subs[1:]):
        assert a.end <= b.start
    vtt = webvtt.from_buffer(io.StringIO(to_vtt(project)))
    captions = list(vtt)
    assert [c.text.split(": ", 1)[1] for c in captions] == [t.text for t in timed]
    secs = [c.start_in_seconds for c in captions]
    assert secs == sorted(secs)


def test_silent_project_gives_empty_subtitles() -> None:
    project = load_preset("silent_action_effects")
    assert list(srt.parse(to_srt(project))) == []
    assert to_vtt(project).startswith("WEBVTT")


def test_subtitles_never_run_past_the_clip() -> None:
    from prompt_builder import Beat, CastMember, Project, to_srt, to_vtt

    project = Project(seconds=2.0, cast=[CastMember("A", name="Mia")],
                      timeline=[Beat("line", "one two three four five six", speaker="A"),
                                Beat("line", "and this line starts after the end", speaker="A")])
    srt = to_srt(project)
    assert srt.count(" --> ") == 1  # the second line would start after 2 s: no cue
    assert "--> 00:00:02,000" in srt  # the first is cut at the clip's end
    assert to_vtt(project, seconds=1.5).count("--> 00:00:01.500") == 1
