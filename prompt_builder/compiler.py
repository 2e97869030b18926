"""Project -> NAVA's dense paragraph, plus the per-span voice list.

NAVA binds the i-th reference voice to the i-th `<S>` span, so the compiler is the only place that
decides span order; it returns the voices in that same order so users never count spans.
Output is deterministic: the same project always gives the same text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .schema import Beat, Project
from .text import CLOSE, OPEN

_NUM_EN = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
_POS_EN = {"left": "on the left", "right": "on the right", "center": "in the center",
           "centre": "in the center", "background": "in the background",
           "foreground": "in the foreground"}
_POS_ZH = {"left": "左侧", "right": "右侧", "center": "画面中央", "centre": "画面中央",
           "background": "背景中", "foreground": "前景中"}
_STEREO_EN = {"left": "placed on the left of the stereo field", "right": "placed on the right of the stereo field",
              "center": "centred", "centre": "centred"}
_STEREO_ZH = {"left": "声像偏左", "right": "声像偏右", "center": "声像居中", "centre": "声像居中"}
_RATE_EN = {"slow": "slowly", "fast": "quickly", "normal": ""}
_RATE_ZH = {"slow": "语速缓慢", "fast": "语速较快", "normal": ""}
_VOLUME_EN = {"soft": "softly", "quiet": "quietly", "loud": "loudly", "normal": ""}
_VOLUME_ZH = {"soft": "声音轻柔", "quiet": "声音很轻", "loud": "声音洪亮", "normal": ""}
_NO_MUSIC = {"", "none", "no", "no music", "无", "无音乐", "无背景音乐"}
# A setting that already starts with one of these reads as a place ("on a rooftop"); others get "in".
_PLACE_PREPOSITIONS = ("in ", "at ", "on ", "inside ", "outside ", "under ", "underneath ", "near ", "by ",
                       "aboard ", "behind ", "beside ", "across ", "along ", "over ", "among ", "amid ",
                       "between ", "around ", "beneath ", "above ", "through ", "within ", "atop ", "off ",
                       "from ", "during ", "into ", "onto ", "upon ", "against ", "next to ", "in front of ",
                       "somewhere ", "here", "there", "everywhere", "indoors", "outdoors", "underwater")
SILENT_EN = "There is no dialogue and no narration in the video."
SILENT_ZH = "画面中没有人物对白，也没有任何旁白。"


@dataclass
class CompiledPrompt:
    """The prompt text, the voice file for each span in order (None = null speaker), and who speaks."""

    text: str
    voices: list[str | None] = field(default_factory=list)
    span_speakers: list[str] = field(default_factory=list)


def compile_project(project: Project) -> CompiledPrompt:
    """Compile a project to NAVA's paragraph form (raw imports keep their surrounding text)."""
    lines = project.lines()
    voices: list[str | None] = []
    for line in lines:
        member = project.cast_member(line.speaker)
        voices.append(member.voice_file if member and member.voice_file else None)
    speakers = [line.speaker for line in lines]
    if project.raw is not None:
        text = _compile_raw(project, lines)
    elif project.language == "zh":
        text = _ZhWriter(project).paragraph()
    else:
        text = _EnWriter(project).paragraph()
    return CompiledPrompt(text=text, voices=voices, span_speakers=speakers)


def _span(text: str) -> str:
    return f"{OPEN}{text}{CLOSE}"


def _compile_raw(project: Project, lines: list[Beat]) -> str:
    """Re-emit imported text verbatim; surplus lines go right after the last imported span."""
    raw = project.raw or [""]
    slots = len(raw) - 1
    writer = _ZhWriter(project) if project.language == "zh" else _EnWriter(project)
    out: list[str] = []
    for i in range(slots):
        out.append(raw[i])
        if i < len(lines):
            out.append(_span(lines[i].text))
    extra = lines[slots:]
    if extra:
        sep = "" if project.language == "zh" else " "
        out.append(sep + sep.join(writer.line_sentence(b, k + slots, lines) for k, b in enumerate(extra)))
    out.append(raw[-1])
    return "".join(out)


def _clean(text: str) -> str:
    return " ".join(text.split()).strip()


def _strip_end(text: str, chars: str = ".。!！?？;；,，") -> str:
    return _clean(text).rstrip(chars)


def _lower_first(text: str) -> str:
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_start(text: str) -> str:
    """Lower-case a sentence's first word after a connector ("Then, a hand..."), keeping names and
    acronyms ("Then, Anna...", "Then, NASA...")."""
    first = text.split(" ", 1)[0]
    if first in ("A", "An", "The"):
        return first.lower() + text[len(first):]
    return _lower_first(text)


def _article(phrase: str) -> str:
    """'a' or 'an' for a noun phrase, or '' when it already starts with an article or determiner."""
    low = phrase.lower()
    if low.startswith(("a ", "an ", "the ", "one ", "this ", "that ", "his ", "her ", "their ", "its ")):
        return ""
    vowel = low[:1] in "aeiou" and not low.startswith(("one", "uni", "use", "eu", "ur"))
    return "an" if vowel or low.startswith(("hour", "honest")) else "a"


def _with_article(phrase: str) -> str:
    art = _article(phrase)
    return f"{art} {phrase}" if art else phrase


def _place_en(setting: str) -> str:
    """'a sunlit corner cafe' -> 'in a sunlit corner cafe'; 'on a rooftop' stays as written."""
    low = setting.lower()
    return setting if low.startswith(_PLACE_PREPOSITIONS) else f"in {setting}"


def _round_seconds(seconds: float) -> float:
    """Durations in prose are read by a model and a person: one decimal is all either can use."""
    return round(seconds, 1)


def seconds_en(seconds: float) -> str:
    """'0.5 seconds', '1 second', '2 seconds'."""
    r = _round_seconds(seconds)
    return f"{r:g} second" + ("" if r == 1 else "s")


class _Writer:
    """Shared sentence assembly; subclasses supply the language's phrasing."""

    def __init__(self, project: Project) -> None:
        self.p = project

    def paragraph(self) -> str:
        parts = [self.scene(), self.subjects(), self.timeline(), self.camera(), self.audio()]
        return self.join([p for p in parts if p])

    def join(self, parts: list[str]) -> str:
        raise NotImplementedError

    def timeline(self) -> str:
        beats = self.p.timeline
        lines = self.p.lines()
        out = []
        k = 0
        for i, beat in enumerate(beats):
            out.append(self.beat_sentence(beat, i, len(beats), k, lines))
            k += beat.kind == "line"
        if not lines:
            out.append(self.silent())
        return self.join([o for o in out if o])

    def beat_sentence(self, beat: Beat, i: int, n: int, k: int, lines: list[Beat]) -> str:
        conn = self.connector(i, n)
        if beat.kind == "line":
            return self.line_sentence(beat, k, lines, conn)
        return self.action_sentence(beat, conn)

    def speaker_bits(self, speaker: str) -> tuple[str, str, str]:
        member = self.p.cast_member(speaker)
        subject = self.p.subject(speaker)
        name = _clean(member.name if member and member.name else
                      (subject.description if subject and subject.description else speaker))
        position = subject.position.strip().lower() if subject else ""
        voice = _strip_end(member.voice) if member else ""
        return name, position, voice

    # subclasses: scene, subjects, connector, action_sentence, line_sentence, silent, camera, audio


class _EnWriter(_Writer):
    def join(self, parts: list[str]) -> str:
        return " ".join(parts)

    def scene(self) -> str:
        s = self.p.scene
        out = []
        style, setting = _strip_end(s.style), _strip_end(s.setting)
        if style or setting:
            head = f"This {style} video" if style else "This video"
            out.append(head + (f" takes place {_place_en(setting)}." if setting else "."))
        clauses = []
        if s.lighting:
            clauses.append(f"the lighting is {_strip_end(s.lighting)}")
        if s.palette:
            clauses.append(f"the palette is {_strip_end(s.palette)}")
        if s.mood:
            clauses.append(f"the overall mood is {_strip_end(s.mood)}")
        if clauses:
            body = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + ", and " + clauses[-1]
            out.append(_upper_first(body) + ".")
        return " ".join(out)

    def subjects(self) -> str:
        subs = [s for s in self.p.subjects if s.description]
        if not subs:
            return ""
        out = []
        if len(subs) > 1:
            out.append(f"There are {_NUM_EN.get(len(subs), str(len(subs)))} subjects in the frame.")
        for s in subs:
            pos = s.position.strip().lower()
            phrase = _POS_EN.get(pos, f"at the {pos}" if pos else "")
            desc = _strip_end(s.description)
            out.append(f"{_upper_first(phrase)}, {_lower_first(desc)}." if phrase else f"{_upper_first(desc)}.")
        return " ".join(out)

    def connector(self, i: int, n: int) -> str:
        if i == 0:
            return "At the beginning of the video, "
        if i == n - 1 and n > 2:
            return "Finally, "
        return "Then, " if i % 2 else "Next, "

    def action_sentence(self, beat: Beat, conn: str) -> str:
        pause = f"after a pause of about {seconds_en(beat.pause)}, " if beat.pause >= 0.3 else ""
        return f"{conn}{pause}{_lower_start(_strip_end(beat.text))}."

    def line_sentence(self, beat: Beat, k: int, lines: list[Beat], conn: str = "Then, ") -> str:
        name, position, voice = self.speaker_bits(beat.speaker)
        who = f"the {name}" if name and name[0].islower() and not name.startswith(("a ", "an ", "the ")) else name
        pos = _POS_EN.get(position, "")
        first = all(prev.speaker != beat.speaker for prev in lines[:k])
        verb = "answers" if k > 0 and lines[k - 1].speaker != beat.speaker else "says"
        d = beat.delivery
        how = [w for w in (_RATE_EN.get(d.rate, ""), _VOLUME_EN.get(d.volume.strip().lower(), d.volume.strip())) if w]
        intro = f"{who} {pos}".strip()
        if d.emotion:
            intro += f", {_strip_end(d.emotion)},"
        intro += f" {verb}"
        if how:
            intro += " " + " and ".join(how)
        if voice and first:
            intro += f" in a {voice} voice"
        pause = f"after a pause of about {seconds_en(beat.pause)}, " if beat.pause >= 0.3 else ""
        return f"{conn}{pause}{intro}: {_span(beat.text)}"

    def silent(self) -> str:
        return SILENT_EN

    def camera(self) -> str:
        c = self.p.camera
        out = []
        frame = []
        if c.shot_size:
            shot = _strip_end(c.shot_size)
            shot = shot if shot.lower().endswith("shot") else f"{shot} shot"  # "a medium two-shot", not "two-shot shot"
            frame.append(_with_article(shot))
        if c.angle:
            angle = _strip_end(c.angle)
            frame.append(f"from {_with_article(angle) if angle.lower().endswith('angle') else angle}")
        head = "The camera frames " + " ".join(frame) if frame else ""
        if c.movement:
            head = (head + " and " if head else "The camera ") + _lower_first(_strip_end(c.movement))
        if head:
            out.append(head + ".")
        if c.pacing:
            out.append(f"The pacing is {_strip_end(c.pacing)}.")
        cuts = _strip_end(c.cuts)
        if cuts.lower() in ("none", "no", "no cuts"):
            out.append("The whole clip is one continuous shot with no cuts.")
        elif cuts:
            out.append(_upper_first(cuts) + ".")
        return " ".join(out)

    def audio(self) -> str:
        a = self.p.audio
        out = []
        speakers = list(dict.fromkeys(b.speaker for b in self.p.lines()))
        voices = []
        for sid in speakers:
            name, position, voice = self.speaker_bits(sid)
            bits = [b for b in (f"a {voice} voice" if voice else "", _STEREO_EN.get(position, "")) if b]
            if bits:
                voices.append(f"the {name} with {', '.join(bits)}" if name[:1].islower() else
                              f"{name} with {', '.join(bits)}")
        if speakers:
            lead = "The audio design centres on clear, close-miked, lip-synced dialogue"
            out.append(lead + (": " + "; ".join(voices) if voices else "") + ".")
        else:
            out.append("The audio design contains only sound effects and ambience.")
        if a.ambience:
            out.append(f"The ambience is {_strip_end(a.ambience)}.")
        if a.effects:
            out.append(f"Sound effects include {_strip_end(a.effects)}.")
        music = _strip_end(a.music)
        out.append("There is no background music." if music.lower() in _NO_MUSIC else f"The music is {music}.")
        if a.mix:
            out.append(f"The mix is {_strip_end(a.mix)}.")
        if a.stereo:
            out.append(_upper_first(_strip_end(a.stereo)) + ".")
        return " ".join(out)


class _ZhWriter(_Writer):
    def join(self, parts: list[str]) -> str:
        return "".join(parts)

    def scene(self) -> str:
        s = self.p.scene
        out = ""
        style, setting = _strip_end(s.style), _strip_end(s.setting)
        if style or setting:
            out += "这是一段" + (f"{style}风格的视频" if style else "视频")
            out += (f"，场景位于{setting}。" if setting else "。")
        clauses = []
        if s.lighting:
            clauses.append(f"光线{_strip_end(s.lighting)}")
        if s.palette:
            clauses.append(f"色调以{_strip_end(s.palette)}为主")
        if s.mood:
            clauses.append(f"整体氛围{_strip_end(s.mood)}")
        if clauses:
            out += "，".join(clauses) + "。"
        return out

    def subjects(self) -> str:
        subs = [s for s in self.p.subjects if s.description]
        if not subs:
            return ""
        parts = []
        for s in subs:
            pos = s.position.strip().lower()
            phrase = _POS_ZH.get(pos, pos)
            desc = _strip_end(s.description)
            parts.append(f"{phrase}是{desc}" if phrase else desc)
        if len(subs) > 1:
            return f"画面中有{len(subs)}个主体：" + "；".join(parts) + "。"
        return "画面中，" + parts[0] + "。"

    def connector(self, i: int, n: int) -> str:
        if i == 0:
            return "视频开始时，"
        if i == n - 1 and n > 2:
            return "最后，"
        return "随后，" if i % 2 else "接着，"

    def action_sentence(self, beat: Beat, conn: str) -> str:
        pause = f"停顿约{_round_seconds(beat.pause):g}秒后，" if beat.pause >= 0.3 else ""
        return f"{conn}{pause}{_strip_end(beat.text)}。"

    def line_sentence(self, beat: Beat, k: int, lines: list[Beat], conn: str = "随后，") -> str:
        name, position, voice = self.speaker_bits(beat.speaker)
        pos = _POS_ZH.get(position, "")
        first = all(prev.speaker != beat.speaker for prev in lines[:k])
        verb = "回应道" if k > 0 and lines[k - 1].speaker != beat.speaker else "说道"
        d = beat.delivery
        bits = []
        if d.emotion:
            bits.append(f"语气{_strip_end(d.emotion)}")
        for w in (_RATE_ZH.get(d.rate, ""), _VOLUME_ZH.get(d.volume.strip().lower(), d.volume.strip())):
            if w:
                bits.append(w)
        intro = f"{pos}的{name}" if pos else name
        if bits:
            intro += "，" + "，".join(bits)
        if voice and first:
            intro += f"，用{voice}的声音"
        pause = f"停顿约{_round_seconds(beat.pause):g}秒后，" if beat.pause >= 0.3 else ""
        return f"{conn}{pause}{intro}{verb}：{_span(beat.text)}。"

    def silent(self) -> str:
        return SILENT_ZH

    def camera(self) -> str:
        c = self.p.camera
        out = ""
        frame = _strip_end(c.angle) + _strip_end(c.shot_size)
        clauses = []
        if frame:
            clauses.append(f"镜头采用{frame}构图")
        if c.movement:
            clauses.append(_strip_end(c.movement))
        if c.pacing:
            clauses.append(f"节奏{_strip_end(c.pacing)}")
        cuts = _strip_end(c.cuts)
        if cuts.lower() in ("none", "no", "no cuts", "无", "不切镜"):
            clauses.append("全程不切镜")
        elif cuts:
            clauses.append(cuts)
        if clauses:
            out = "，".join(clauses) + "。"
        return out

    def audio(self) -> str:
        a = self.p.audio
        speakers = list(dict.fromkeys(b.speaker for b in self.p.lines()))
        clauses = []
        if speakers:
            voices = []
            for sid in speakers:
                name, position, voice = self.speaker_bits(sid)
                desc = f"{_POS_ZH.get(position, '')}{name}的声音" + (voice if voice else "清晰")
                if position in _STEREO_ZH:
                    desc += f"，{_STEREO_ZH[position]}"
                voices.append(desc)
            clauses.append("整体音频设计以清晰近场人声对白为主，口型同步，" + "；".join(voices))
        else:
            clauses.append("整体音频设计只有动作音效与环境声")
        if a.ambience:
            clauses.append(f"背景环境音为{_strip_end(a.ambience)}")
        if a.effects:
            clauses.append(f"音效包括{_strip_end(a.effects)}")
        music = _strip_end(a.music)
        clauses.append("无背景音乐" if music.lower() in _NO_MUSIC else f"背景音乐为{music}")
        if a.mix:
            clauses.append(f"混音{_strip_end(a.mix)}")
        if a.stereo:
            clauses.append(_strip_end(a.stereo))
        return "，".join(clauses) + "。"
