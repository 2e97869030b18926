"""History store: survives a restart, never loses an unfinished render silently."""

from __future__ import annotations

from app.history import HistoryStore


def test_history_persists_across_instances(tmp_path):
    db = tmp_path / "history.sqlite"
    store = HistoryStore(db)
    store.add("r1", '{"prompt": "a"}', {"project": {"title": "x"}}, title="first")
    store.update("r1", status="running")
    store.update("r1", status="done", outputs={"mp4": "/x.mp4"}, timings={"total_s": 1.5})
    store.add("r2", '{"prompt": "b"}', None, title="second")

    again = HistoryStore(db)  # a restarted studio
    entries = again.list()
    assert [e.id for e in entries] == ["r2", "r1"]  # newest first
    r1 = again.get("r1")
    assert r1.status == "done" and r1.outputs == {"mp4": "/x.mp4"} and r1.timings == {"total_s": 1.5}
    assert r1.builder == {"project": {"title": "x"}}


def test_unfinished_renders_become_interrupted_on_restart(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    store.add("q", "{}", None)
    store.add("d", "{}", None)
    store.update("d", status="done")
    assert HistoryStore(tmp_path / "h.sqlite").mark_interrupted() == 1
    q = store.get("q")
    assert q.status == "interrupted" and "reuse settings" in q.error
    assert store.get("d").status == "done"
