"""The builder's timeline and cast rows: a fixed pool of rows whose fields are the source of truth.

Why not `gr.render`: re-rendering rows from a state dict while another event writes that dict raced
(`RuntimeError: dictionary changed size during iteration` in Gradio's render loop, rows coming back
disabled), and per-keystroke `.input` handlers that copied the whole list back into the state dropped
keystrokes (`trigger_mode="once"` discards an event while the previous one is pending). Here:

- the page holds `MAX_BEATS` beat rows and `MAX_CAST` cast rows, built once; a row is shown when the
  beats/cast state has that many entries;
- typing never writes state: every reader (compile, render, export, timeline) merges the *complete*
  current field values over the state (`merge_rows`), and the recompile runs `always_last`, so the
  compiled prompt is always what the boxes say once typing stops;
- structural edits (add, delete, move, preset load, import, reuse) take every field value, apply the
  edit to the merged list, and write the state plus only the fields whose value changed, so a row
  being typed into elsewhere is not overwritten.

The state keeps what has no field here (pause, action length, volume, the voice file).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr

MAX_BEATS = 16
MAX_CAST = 6
RATES = ("slow", "normal", "fast")
KINDS = ("line", "action")
BEAT_FIELDS = 5  # kind, speaker, text, delivery, rate
CAST_FIELDS = 3  # id, name, voice description
SPEAKER_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def new_beat(kind: str, speaker: str = "") -> dict[str, Any]:
    return {"kind": kind, "text": "", "speaker": speaker if kind == "line" else "",
            "delivery": {"emotion": "", "rate": "normal", "volume": ""}, "pause": 0.0,
            "seconds": 0.0 if kind == "line" else 1.0}


def merge_rows(beats: list[dict[str, Any]], cast: list[dict[str, Any]],
               values: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The beats and cast as the page shows them: the state's entries with every field value laid over."""
    out_beats = []
    for i, beat in enumerate(beats[:MAX_BEATS]):
        kind, spk, text, emo, rate = values[i * BEAT_FIELDS:(i + 1) * BEAT_FIELDS]
        b = copy.deepcopy(beat)
        b["kind"] = kind if kind in KINDS else b.get("kind", "line")
        b["speaker"] = str(spk or "").strip() if b["kind"] == "line" else str(spk or b.get("speaker") or "")
        b["text"] = str(text or "")
        delivery = dict(b.get("delivery") or {})
        delivery["emotion"] = str(emo or "")
        delivery["rate"] = rate if rate in RATES else "normal"
        delivery.setdefault("volume", "")
        b["delivery"] = delivery
        out_beats.append(b)
    base = MAX_BEATS * BEAT_FIELDS
    out_cast = []
    for j, member in enumerate(cast[:MAX_CAST]):
        cid, name, desc = values[base + j * CAST_FIELDS: base + (j + 1) * CAST_FIELDS]
        m = dict(member)
        m["id"] = str(cid or "").strip() or m.get("id", "")
        m["name"] = str(name or "")
        m["voice"] = str(desc or "")
        out_cast.append(m)
    return out_beats, out_cast


def speaker_choices(cast: list[dict[str, Any]]) -> list[str]:
    return [c["id"] for c in cast if c.get("id")] or ["A"]


def _speaker_label(member: dict[str, Any]) -> str:
    name = member.get("name") or member.get("id") or "?"
    vf = member.get("voice_file") or ""
    return f"**{name}** (speaker {member.get('id', '')})" + (f" — `{Path(vf).name}`" if vf else " — no reference voice")


def voice_label(path: str) -> str:
    """The name a person gave the voice file (uploads keep it as the file's name in a digest folder)."""
    return Path(path).name if path else ""


@dataclass
class BeatSlot:
    row: Any
    kind: Any
    spk: Any
    text: Any
    emo: Any
    rate: Any
    up: Any
    rm: Any

    @property
    def fields(self) -> list[Any]:
        return [self.kind, self.spk, self.text, self.emo, self.rate]

    @property
    def outputs(self) -> list[Any]:
        return [self.row, *self.fields]


@dataclass
class CastSlot:
    row: Any
    cid: Any
    name: Any
    desc: Any
    drop: Any
    player: Any
    note: Any
    rm: Any

    @property
    def fields(self) -> list[Any]:
        return [self.cid, self.name, self.desc]

    @property
    def outputs(self) -> list[Any]:
        return [self.row, *self.fields, self.drop, self.player, self.note]


@dataclass
class CastTabSlot:
    """A speaker on the Voice cast tab: who it is, their voice to listen to, and a drop zone to replace it."""

    row: Any
    label: Any
    player: Any
    drop: Any

    @property
    def outputs(self) -> list[Any]:
        return [self.row, self.label, self.player, self.drop]


@dataclass
class BuilderRows:
    """The row pool of one page; build the two halves where they belong, then `wire`."""

    service: Any
    beats: gr.State
    cast: gr.State
    beat_slots: list[BeatSlot] = field(default_factory=list)
    cast_slots: list[CastSlot] = field(default_factory=list)
    tab_slots: list[CastTabSlot] = field(default_factory=list)

    # ---- layout ------------------------------------------------------------------------------

    def build_beats(self, init_beats: list[dict[str, Any]], init_cast: list[dict[str, Any]]) -> None:
        ids = speaker_choices(init_cast)
        for i in range(MAX_BEATS):
            beat = init_beats[i] if i < len(init_beats) else new_beat("line")
            shown = i < len(init_beats)
            with gr.Row(equal_height=True, visible=shown, elem_classes=["nava-beat-row"],
                        elem_id=f"beat-row-{i}") as row:
                kind = gr.Dropdown(list(KINDS), value=beat.get("kind", "line"), label="kind", min_width=100,
                                   scale=0, elem_classes=["nava-beat-kind"], elem_id=f"beat-kind-{i}")
                spk = gr.Dropdown(ids, value=beat.get("speaker") or None, label="speaker", min_width=90, scale=0,
                                  allow_custom_value=True, visible=beat.get("kind", "line") == "line",
                                  elem_id=f"beat-spk-{i}")
                text = gr.Textbox(value=beat.get("text", ""), label=f"{i + 1}. text", scale=4, min_width=140,
                                  elem_id=f"beat-text-{i}")
                emo = gr.Textbox(value=(beat.get("delivery") or {}).get("emotion", ""), label="delivery", scale=2,
                                 min_width=100, elem_id=f"beat-emo-{i}")
                rate = gr.Dropdown(list(RATES), value=(beat.get("delivery") or {}).get("rate", "normal"),
                                   label="rate", min_width=110, scale=0, elem_classes=["nava-beat-rate"],
                                   elem_id=f"beat-rate-{i}")
                with gr.Column(scale=0, min_width=40):
                    up = gr.Button("↑", size="sm", min_width=36, elem_id=f"beat-up-{i}")
                    rm = gr.Button("✕", size="sm", min_width=36, elem_id=f"beat-rm-{i}")
            self.beat_slots.append(BeatSlot(row, kind, spk, text, emo, rate, up, rm))

    def build_cast(self, init_cast: list[dict[str, Any]], voice_exts: list[str]) -> None:
        for j in range(MAX_CAST):
            member = init_cast[j] if j < len(init_cast) else {"id": "", "name": "", "voice": "", "voice_file": ""}
            shown = j < len(init_cast)
            with gr.Row(equal_height=False, visible=shown, elem_classes=["nava-cast-row"],
                        elem_id=f"cast-row-{j}") as row:
                cid = gr.Textbox(value=member.get("id", ""), label="speaker id", min_width=90, scale=1,
                                 elem_id=f"cast-id-{j}")
                name = gr.Textbox(value=member.get("name", ""), label="name", scale=1, elem_id=f"cast-name-{j}")
                desc = gr.Textbox(value=member.get("voice", ""), label="voice description", scale=2,
                                  elem_id=f"cast-desc-{j}")
                with gr.Column(scale=3, min_width=280):
                    vf = member.get("voice_file") or ""
                    # shows the voice by its file name; drop another file on it to replace the voice
                    drop = gr.File(value=vf or None, label="reference voice (any audio format; drop a file to replace)",
                                   type="filepath", file_types=voice_exts, height=120, elem_classes=["nava-voice-drop"],
                                   elem_id=f"cast-voice-{j}")
                    preview, note = self.service.voice_preview(vf) if vf else (None, "")
                    player = gr.Audio(value=preview, label="listen", interactive=False, visible=bool(preview),
                                      elem_id=f"cast-play-{j}")
                    info = gr.Markdown(note or "No reference voice: NAVA uses the voice description.",
                                       elem_id=f"cast-note-{j}")
                rm = gr.Button("✕", size="sm", min_width=30, scale=0, elem_id=f"cast-rm-{j}")
            self.cast_slots.append(CastSlot(row, cid, name, desc, drop, player, info, rm))

    def build_cast_tab(self, init_cast: list[dict[str, Any]], voice_exts: list[str]) -> None:
        """The Voice cast tab's view of the same speakers: listen to each voice, drop a file to replace it."""
        for j in range(MAX_CAST):
            member = init_cast[j] if j < len(init_cast) else {"id": "", "name": "", "voice_file": ""}
            vf = member.get("voice_file") or ""
            preview = self.service.voice_preview(vf)[0] if vf else None
            with gr.Row(visible=j < len(init_cast), equal_height=True, elem_id=f"tab-cast-row-{j}") as row:
                label = gr.Markdown(_speaker_label(member), elem_id=f"tab-cast-label-{j}")
                player = gr.Audio(value=preview, label="voice", interactive=False, visible=bool(preview),
                                  elem_id=f"tab-cast-play-{j}", scale=2)
                drop = gr.File(value=vf or None, label="drop a file to replace this voice", type="filepath",
                               file_types=voice_exts, height=90, elem_id=f"tab-cast-voice-{j}", scale=2)
            self.tab_slots.append(CastTabSlot(row, label, player, drop))

    def tab_updates(self, cast: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for j in range(len(self.tab_slots)):
            if j >= len(cast):
                out += [gr.update(visible=False), gr.update(), gr.update(), gr.update()]
                continue
            vf = cast[j].get("voice_file") or ""
            preview = self.service.voice_preview(vf)[0] if vf else None
            out += [gr.update(visible=True), _speaker_label(cast[j]), gr.update(value=preview, visible=bool(preview)),
                    gr.update(value=vf or None)]
        return out

    @property
    def tab_outputs(self) -> list[Any]:
        return [o for s in self.tab_slots for o in s.outputs]

    # ---- what other code reads ---------------------------------------------------------------

    @property
    def fields(self) -> list[Any]:
        """Every row field, in the order `merge_rows` expects."""
        return [f for s in self.beat_slots for f in s.fields] + [f for s in self.cast_slots for f in s.fields]

    @property
    def outputs(self) -> list[Any]:
        """What `updates` writes: every beat row then every cast row (row, fields, voice widgets)."""
        return [o for s in self.beat_slots for o in s.outputs] + [o for s in self.cast_slots for o in s.outputs]

    def updates(self, beats: list[dict[str, Any]], cast: list[dict[str, Any]],
                old: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None) -> list[Any]:
        """Updates for `outputs` showing `beats` and `cast`. With `old` (what the page shows now), a field
        whose value does not change is left alone, so typing in another row is never overwritten."""
        ob, oc = old if old is not None else (None, None)
        ids = speaker_choices(cast)
        ids_changed = ob is None or speaker_choices(oc or []) != ids
        out: list[Any] = []
        for i in range(MAX_BEATS):
            shown = i < len(beats)
            if not shown and ob is not None and i >= len(ob):  # hidden before and after: leave it alone
                out += [gr.update()] * 6
                continue
            b = beats[i] if shown else new_beat("line")
            was = ob[i] if ob is not None and i < len(ob) else None
            d = b.get("delivery") or {}
            wd = (was.get("delivery") or {}) if was else {}

            def val(new: Any, old_v: Any, **extra: Any) -> Any:
                if was is not None and new == old_v and not extra:
                    return gr.update()
                return gr.update(value=new, **extra)

            out.append(gr.update(visible=shown) if ob is None or (i < len(ob)) != shown else gr.update())
            out.append(val(b.get("kind", "line"), was.get("kind") if was else None))
            spk_extra: dict[str, Any] = {"visible": b.get("kind", "line") == "line"}
            if ids_changed:
                spk_extra["choices"] = ids
            same_spk = was is not None and b.get("speaker") == was.get("speaker") and \
                b.get("kind") == was.get("kind") and not ids_changed
            out.append(gr.update() if same_spk else gr.update(value=b.get("speaker") or None, **spk_extra))
            out.append(val(b.get("text", ""), was.get("text") if was else None))
            out.append(val(d.get("emotion", ""), wd.get("emotion")))
            out.append(val(d.get("rate", "normal"), wd.get("rate")))
        for j in range(MAX_CAST):
            shown = j < len(cast)
            if not shown and oc is not None and j >= len(oc):
                out += [gr.update()] * 7
                continue
            m = cast[j] if shown else {"id": "", "name": "", "voice": "", "voice_file": ""}
            was = oc[j] if oc is not None and j < len(oc) else None
            out.append(gr.update(visible=shown) if oc is None or (j < len(oc)) != shown else gr.update())
            for key in ("id", "name", "voice"):
                same = was is not None and m.get(key, "") == was.get(key, "")
                out.append(gr.update() if same else gr.update(value=m.get(key, "")))
            vf = m.get("voice_file") or ""
            if was is not None and vf == (was.get("voice_file") or ""):
                out += [gr.update(), gr.update(), gr.update()]
            else:
                preview, note = self.service.voice_preview(vf) if vf else (None, "")
                out += [gr.update(value=vf or None), gr.update(value=preview, visible=bool(preview)),
                        gr.update(value=note or "No reference voice: NAVA uses the voice description.")]
        return out

    # ---- events ------------------------------------------------------------------------------

    def wire(self, recompile: dict[str, Any], add_line: Any, add_action: Any, add_speaker: Any) -> None:
        """Recompile on every edit a person makes in a row (`.input`: typing, picking; programmatic
        updates do not fire it) and after every structural edit, which writes state + changed fields."""
        io_in = [self.beats, self.cast, *self.fields]
        io_out = [self.beats, self.cast, *self.outputs]
        for f in self.fields:
            f.input(**recompile)
        self._recompile = recompile

        def edit(op: Callable[[list[dict[str, Any]], list[dict[str, Any]]], tuple[list, list] | None]):
            def fn(beats: list[dict[str, Any]], cast: list[dict[str, Any]], *values: Any) -> list[Any]:
                cur_b, cur_c = merge_rows(list(beats or []), list(cast or []), list(values))
                res = op(copy.deepcopy(cur_b), copy.deepcopy(cur_c))
                if res is None:
                    return [gr.update(), gr.update(), *([gr.update()] * len(self.outputs))]
                nb, nc = res
                return [nb, nc, *self.updates(nb, nc, old=(cur_b, cur_c))]
            return fn

        ev = dict(inputs=io_in, outputs=io_out, show_progress="hidden", api_visibility="private")

        def _add(kind: str):
            def op(bl: list, cl: list):
                if len(bl) >= MAX_BEATS:
                    gr.Warning(f"A clip holds at most {MAX_BEATS} beats here; split the scene into two clips.")
                    return None
                return bl + [new_beat(kind, speaker_choices(cl)[0])], cl
            return op

        add_line.click(edit(_add("line")), **ev).then(**recompile)
        add_action.click(edit(_add("action")), **ev).then(**recompile)

        def _add_speaker(bl: list, cl: list):
            if len(cl) >= MAX_CAST:
                gr.Warning(f"At most {MAX_CAST} speakers: more voices do not stay distinct in one clip.")
                return None
            used = {c["id"] for c in cl}
            new_id = next(ch for ch in SPEAKER_IDS if ch not in used)
            return bl, cl + [{"id": new_id, "name": "", "voice": "", "voice_file": ""}]

        add_speaker.click(edit(_add_speaker), **ev).then(**recompile)

        for i, slot in enumerate(self.beat_slots):
            def _up(bl: list, cl: list, idx: int = i):
                if 0 < idx < len(bl):
                    bl[idx - 1], bl[idx] = bl[idx], bl[idx - 1]
                return bl, cl

            def _rm(bl: list, cl: list, idx: int = i):
                return [b for k, b in enumerate(bl) if k != idx], cl

            slot.up.click(edit(_up), **ev).then(**recompile)
            slot.rm.click(edit(_rm), **ev).then(**recompile)
            # a line has a speaker, an action does not: show the speaker box accordingly (no state write)
            slot.kind.change(lambda k: gr.update(visible=k == "line"), slot.kind, slot.spk, show_progress="hidden",
                             api_visibility="private")

        for j, cslot in enumerate(self.cast_slots):
            def _crm(bl: list, cl: list, idx: int = j):
                return bl, [c for k, c in enumerate(cl) if k != idx]

            cslot.rm.click(edit(_crm), **ev).then(**recompile)
            # a renamed speaker id: the speaker dropdowns of every line offer the new set of ids
            cslot.cid.blur(edit(lambda bl, cl: (bl, cl)), **ev)

            def _voice(path: str | None, beats: list, cast: list, *values: Any, idx: int = j):
                res = self._set_voice(path, beats, cast, values, idx)
                if res is None:
                    return [gr.update()] * 4
                cur_c, stored, preview, note = res
                return [cur_c, gr.update(value=stored), gr.update(value=preview, visible=bool(preview)), note]

            vin = [cslot.drop, self.beats, self.cast, *self.fields]
            vout = [self.cast, cslot.drop, cslot.player, cslot.note]
            cslot.drop.upload(_voice, vin, vout, api_visibility="private").then(**recompile)
            cslot.drop.clear(lambda *a, idx=j: _voice(None, *a[1:], idx=idx), vin, vout,
                             api_visibility="private").then(**recompile)

    def _set_voice(self, path: str | None, beats: list, cast: list, values: Any,
                   idx: int) -> tuple[Any, str | None, str | None, str] | None:
        """A voice dropped (or cleared) for speaker slot `idx` -> (cast state or gr.update() when refused,
        the stored file, its playable preview, the note); None when the slot is not in use."""
        _, cur_c = merge_rows(list(beats or []), list(cast or []), list(values))
        if idx >= len(cur_c):
            return None
        if not path:  # the file was cleared: the speaker goes back to the voice description
            cur_c[idx]["voice_file"] = ""
            return cur_c, None, None, "No reference voice: NAVA uses the voice description."
        old = cur_c[idx].get("voice_file") or None
        try:
            up = self.service.add_voice(path)
        except Exception as e:  # noqa: BLE001 - StudioError says what to do; the old voice stays
            gr.Warning(str(e))
            preview = self.service.voice_preview(old)[0] if old else None
            return gr.update(), old, preview, f"⛔ {e}"
        cur_c[idx]["voice_file"] = up.path
        return cur_c, up.path, up.preview, f"Voice **{voice_label(up.path)}**: {up.note}"

    def wire_cast_tab(self, recompile: dict[str, Any]) -> None:
        """The Voice cast tab's drop zones replace the same speaker's voice as the Studio's do."""
        for j, (tslot, cslot) in enumerate(zip(self.tab_slots, self.cast_slots)):
            def _replace(path: str | None, beats: list, cast: list, *values: Any, idx: int = j):
                res = self._set_voice(path, beats, cast, values, idx) if path else None
                if res is None:
                    return [gr.update()] * 6
                cur_c, stored, preview, note = res
                label = _speaker_label(cur_c[idx]) if isinstance(cur_c, list) else gr.update()
                play = gr.update(value=preview, visible=bool(preview))
                return [cur_c, gr.update(value=stored), play, note, play, label]

            tslot.drop.upload(_replace, [tslot.drop, self.beats, self.cast, *self.fields],
                              [self.cast, cslot.drop, cslot.player, cslot.note, tslot.player, tslot.label],
                              api_visibility="private").then(**recompile)
