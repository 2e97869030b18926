"""The timeline tab's drag edits: JSON from the drag script applied to the builder state (handlers.timeline_edit)."""

from __future__ import annotations

import copy
import json

import pytest

from app import builder as B
from app import handlers as H
from app import timeline_view as TV

N = len(B.FORM_KEYS)


def _vals(state=None):
    return H.form_updates(state or B.default_state())


def _three_lines():
    state = B.default_state()
    state["project"]["timeline"].append({"kind": "line", "text": "Tell me everything.", "speaker": "A",
                                         "delivery": {"emotion": "", "rate": "normal", "volume": ""},
                                         "pause": 0.0, "seconds": 0.0})
    return state


def _edit(vals, edit):
    return H.timeline_edit(edit if isinstance(edit, str) else json.dumps(edit), vals)


def _rows(beats):
    return [(b["speaker"], b["text"], b["pause"]) for b in beats]


def test_retime_sets_pause_snapped_to_a_tenth():
    vals = _vals()
    beats, picture, rows, message, ok = _edit(vals, {"op": "retime", "index": 1, "start": 3.44})
    assert ok, message
    assert beats[1]["pause"] == pytest.approx(3.4 - 2.583, abs=1e-3)
    assert rows[1][1] == pytest.approx(3.4)  # the table shows the dropped start
    assert 'data-start="3.4"' in picture and "line 2 starts at 3.4 s" in message
    assert vals[N][1]["pause"] == 0.0  # the given state is not mutated


def test_retime_never_before_the_previous_line_ends():
    beats, _, rows, message, ok = _edit(_vals(), {"op": "retime", "index": 1, "start": 0.7})
    assert ok, message
    assert beats[1]["pause"] == 0.0 and rows[1][1] == rows[0][2]  # butts up against line 1


def test_retime_by_pause():
    beats, _, _, message, ok = _edit(_vals(), {"op": "retime", "index": 0, "pause": 0.53})
    assert ok and beats[0]["pause"] == pytest.approx(0.5)


def test_reassign_to_a_cast_member():
    beats, picture, rows, message, ok = _edit(_vals(), {"op": "reassign", "index": 1, "speaker": "A"})
    assert ok, message
    assert beats[1]["speaker"] == "A" and rows[1][3] == "A"
    assert 'data-speaker="B"><span class="nava-lane-label" title="Tom (speaker B)">Tom</span></div>' in picture  # B's lane is empty now


def test_move_reorders_lines():
    state = _three_lines()
    beats, _, rows, message, ok = _edit(_vals(state), {"op": "move", "index": 2, "to": 0})
    assert ok, message
    assert [b["text"] for b in beats] == ["Tell me everything.", "Did you hear the news this morning?",
                                          "I did, and I still can't believe it."]
    assert [r[4] for r in rows] == [b["text"] for b in beats]


def test_drag_script_payload_applies_all_edits_together():
    payload = {"edits": [{"op": "reassign", "index": 1, "speaker": "A"}, {"op": "retime", "index": 1, "start": 3.2}],
               "seq": 1712345678901}
    beats, _, rows, message, ok = _edit(_vals(), payload)
    assert ok, message
    assert beats[1]["speaker"] == "A" and rows[1][1] == pytest.approx(3.2)
    assert "now spoken by A" in message


def test_compiled_prompt_follows_the_edit():
    vals = _vals()
    before = B.compile_state(H.state_of(vals)).text
    beats, *_ = _edit(vals, {"edits": [{"op": "reassign", "index": 1, "speaker": "A"},
                                       {"op": "retime", "index": 1, "start": 3.5}]})
    after = B.compile_state(H.state_of(vals[:N] + [beats, vals[N + 1]])).text
    assert after != before and "after a pause of about" in after


@pytest.mark.parametrize("edit, words", [
    ("{not json", "not valid JSON"),
    ("", "no edit given"),
    ("[]", "give 1 to"),
    ('"retime"', "JSON object"),
    ({"op": "explode", "index": 0}, "unknown op"),
    ({"op": "retime", "index": 7, "start": 1.0}, "there is no beat 7"),
    ({"op": "retime", "index": -1, "start": 1.0}, "there is no beat -1"),
    ({"op": "retime", "index": "1", "start": 1.0}, "whole number"),
    ({"op": "retime", "index": True, "start": 1.0}, "whole number"),
    ({"op": "retime", "index": 1}, "either 'start' or 'pause'"),
    ({"op": "retime", "index": 1, "start": 1.0, "pause": 1.0}, "either 'start' or 'pause'"),
    ({"op": "retime", "index": 1, "start": -2}, "from 0 to 3600"),
    ({"op": "retime", "index": 1, "start": "late"}, "from 0 to 3600"),
    ({"op": "reassign", "index": 1, "speaker": "Z"}, "not in the cast"),
    ({"op": "reassign", "index": 1}, "speaker id"),
    ({"op": "move", "index": 1, "to": 5}, "cannot move to beat 5"),
    ({"op": "move", "index": 1}, "whole number"),
    ({"edits": [{"op": "reassign", "index": 1, "speaker": "A"}, {"op": "retime", "index": 9, "start": 1}]},
     "edit 2 (retime): there is no beat 9"),
])
def test_invalid_edits_are_refused_and_change_nothing(edit, words):
    vals = _vals()
    kept = copy.deepcopy(vals[N])
    beats, picture, rows, message, ok = _edit(vals, edit)
    assert not ok
    assert message.startswith("Timeline edit refused:") and words in message, message
    assert beats == kept and vals[N] == kept  # state unchanged, even after a partly valid list
    assert [r[3] for r in rows] == ["A", "B"] and "nava-clip" in picture  # the timeline is re-drawn as it was


def test_refused_edit_redraws_with_a_fresh_stamp():
    vals = _vals()
    first = _edit(vals, "{bad")[1]
    second = _edit(vals, "{bad")[1]
    assert first != second  # a changed value makes the page replace the dragged block


def test_actions_are_not_draggable_lines():
    state = B.default_state()
    state["project"]["timeline"].insert(1, {"kind": "action", "text": "She sips her coffee.", "speaker": "",
                                            "delivery": {"emotion": "", "rate": "normal", "volume": ""},
                                            "pause": 0.0, "seconds": 1.0})
    _, _, _, message, ok = _edit(_vals(state), {"op": "retime", "index": 1, "start": 4})
    assert not ok and "is an action" in message
    beats, _, rows, message, ok = _edit(_vals(state), {"op": "retime", "index": 2, "start": 2.0})
    assert ok and beats[2]["pause"] == 0.0  # the action's second keeps line 2 after 3.583 s
    assert rows[1][1] == pytest.approx(3.583)


def test_timeline_html_carries_what_the_drag_script_reads():
    project = B.default_state()["project"]
    picture = TV.timeline_html(project, 6.0)
    assert 'draggable="true"' not in picture  # pointer events, not native drag-and-drop
    assert 'data-beat="1"' in picture and 'data-speaker="B"' in picture and 'data-end="' in picture
    assert 'class="nava-lane" data-speaker="A"' in picture
    assert TV.HINT in picture
