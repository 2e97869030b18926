"""The studio's Rewrite action: rewrite the compiled prompt or a free-text idea with an LLM, show the result
as a diff against the original, accept or reject.

Accepting puts the text in the hand-edited prompt. The rewriter guarantees every spoken line is
unchanged and in order, and the studio binds voices by line order, so each line keeps its voice.
Progress and cancel work like a render's, but a rewrite never enters the render queue.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app import builder as B
from app import handlers as H
from app.rewrites import RewriteJob, RewriteService
from prompt_builder.rewrite import RewriteError
from prompt_builder.text import SPAN_RE

_TOKEN_RE = re.compile(r"<S>.*?<E>|\s+|[^\s<]+|<", re.S)


@dataclass
class RewritePanel:
    """The components under the prompt box."""

    idea: gr.Textbox
    rewrite_prompt: gr.Button
    rewrite_idea: gr.Button
    cancel: gr.Button
    status: gr.HTML
    diff: gr.HTML
    decide: gr.Row
    accept: gr.Button
    reject: gr.Button
    proposal: gr.State


@dataclass
class RewriteSettings:
    """The Model tab's fields (this browser session only; empty = the studio's default)."""

    endpoint: gr.Textbox
    model: gr.Textbox
    api_key: gr.Textbox
    local_model: gr.Textbox

    @property
    def inputs(self) -> list[gr.Textbox]:
        return [self.endpoint, self.model, self.api_key, self.local_model]


def build_rewrite_panel() -> RewritePanel:
    """Lay out the Rewrite box; call it inside the studio column, right under the prompt."""
    with gr.Accordion("Rewrite with an LLM", open=False, elem_id="rewrite-box"):
        gr.Markdown("NAVA renders best from long, dense captions. An LLM can expand the prompt (or a short idea) "
                    "into one; spoken lines always come back unchanged, so every voice stays on its line. "
                    "Choose the LLM on the Model tab.")
        idea = gr.Textbox(label="Idea (optional: rewrite this free text instead of the prompt)", lines=2,
                          elem_id="rewrite-idea", placeholder="two friends argue about the rain; she says <S>Told you.<E>")
        with gr.Row():
            rewrite_prompt = gr.Button("Rewrite prompt", elem_id="rewrite-btn")
            rewrite_idea = gr.Button("Rewrite idea", elem_id="rewrite-idea-btn")
            cancel = gr.Button("Cancel rewrite", variant="stop", elem_id="rewrite-cancel")
        status = gr.HTML(status_html("idle", "No rewrite yet."), elem_id="rewrite-status")
        diff = gr.HTML(elem_id="rewrite-diff")
        with gr.Row(visible=False) as decide:
            accept = gr.Button("Accept rewrite", variant="primary", elem_id="rewrite-accept")
            reject = gr.Button("Reject", elem_id="rewrite-reject")
        proposal = gr.State("")
    return RewritePanel(idea, rewrite_prompt, rewrite_idea, cancel, status, diff, decide, accept, reject, proposal)


def build_rewrite_settings(rewrites: RewriteService) -> RewriteSettings:
    """The Model tab's 'Prompt rewriting' box. Nothing typed here is stored on the server or in any file."""
    editable = rewrites.editable
    with gr.Accordion("Prompt rewriting (LLM)", open=False, elem_id="rewrite-settings"):
        gr.Markdown(f"**Default:** {html.escape(rewrites.describe())} (from `--rewrite-*` flags or `NAVA_REWRITE_*` "
                    "environment variables). Fields below override it for this browser tab only; they are never "
                    "written to history, sidecars or settings files."
                    + ("" if editable else "\n\nThis studio is shared, so only its administrator can choose the "
                       "rewriter (flags or environment)."))
        with gr.Row():
            endpoint = gr.Textbox(label="Endpoint URL (OpenAI-compatible)", placeholder="http://127.0.0.1:8000/v1",
                                  elem_id="rewrite-endpoint", interactive=editable)
            model = gr.Textbox(label="Model name (empty: the first the server lists)", elem_id="rewrite-model",
                               interactive=editable)
            api_key = gr.Textbox(label="API key", type="password", elem_id="rewrite-key", interactive=editable)
        local_model = gr.Textbox(label="…or a local transformers model (folder or Hub id), loaded on first use",
                                 elem_id="rewrite-local", interactive=editable)
    return RewriteSettings(endpoint, model, api_key, local_model)


# ---- pure helpers (tested directly) ---------------------------------------------------------------------


def status_html(status: str, message: str) -> str:
    return (f'<div class="nava-progress nava-status-{status}" data-status="{status}">'
            f'<div class="nava-msg">{html.escape(message)}</div></div>')


def diff_html(original: str, rewritten: str) -> str:
    """Word-level diff; spoken lines are single tokens, shown highlighted (they never differ)."""
    a, b = _TOKEN_RE.findall(original), _TOKEN_RE.findall(rewritten)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(_tokens(b[j1:j2]))
            continue
        if i2 > i1:
            out.append(f'<del class="nava-del">{_tokens(a[i1:i2])}</del>')
        if j2 > j1:
            out.append(f'<ins class="nava-ins">{_tokens(b[j1:j2])}</ins>')
    return f'<div class="nava-diff">{"".join(out)}</div>'


def _tokens(tokens: list[str]) -> str:
    return "".join(f'<span class="nava-span">{html.escape(t)}</span>' if t.startswith("<S>") else html.escape(t)
                   for t in tokens)


def speaker_names(state: dict[str, Any], span_speakers: list[str]) -> list[str]:
    """How the compiled prompt names each line's speaker (cast name, else subject description, else id)."""
    project = B.project_of(state)
    names = []
    for sid in span_speakers:
        member, subject = project.cast_member(sid), project.subject(sid)
        names.append((member.name if member and member.name else "")
                      or (subject.description if subject and subject.description else "") or sid)
    return names


def job_updates(job: RewriteJob, label: str) -> list[Any]:
    """[status, diff, decide row, proposal] for a job's current state."""
    if job.status == "running":
        got = f"; {len(job.partial)} characters so far" if job.partial else ""
        return [status_html("running", f"Rewriting with {label}… {job.elapsed_s:.0f} s{got}"),
                gr.update(), gr.update(visible=False), gr.update()]
    if job.status != "done" or job.result is None:
        msg = "Rewrite cancelled; the prompt is unchanged." if job.status == "cancelled" else f"Rewrite failed: {job.error}"
        return [status_html(job.status, msg), "", gr.update(visible=False), ""]
    res = job.result
    if not res.accepted:
        return [status_html("failed", res.message[:1].upper() + res.message[1:]), "", gr.update(visible=False), ""]
    return [status_html("done", f"Rewrite ready ({res.message}). Review the changes, then accept or reject."),
            diff_html(job.source, res.text), gr.update(visible=True), res.text]


# ---- events ---------------------------------------------------------------------------------------------


def wire_rewrite(rewrites: RewriteService, panel: RewritePanel, settings: RewriteSettings,
                 form: dict[str, Any], all_inputs: list[Any]) -> None:
    """Connect the panel: start (prompt or idea), follow, cancel, accept into the hand-edited prompt, reject."""
    outputs = [panel.status, panel.diff, panel.decide, panel.proposal]

    def start(source: str):
        def fn(data: dict[Any, Any], request: gr.Request):
            owner = getattr(request, "session_hash", "") or ""
            state = H.state_of([data[c] for c in all_inputs])
            compiled = B.compile_state(state)
            names = speaker_names(state, compiled.span_speakers)
            if source == "idea":
                text = (data[panel.idea] or "").strip()
                # an idea with the timeline's own lines keeps their speakers; other lines are the idea's own
                speakers = names if SPAN_RE.findall(text) == SPAN_RE.findall(compiled.text) else None
            else:
                text, speakers = compiled.text, names
            try:
                config = rewrites.settings(*(data[c] for c in settings.inputs)) if rewrites.editable else rewrites.config
                job = rewrites.start(text, owner=owner, config=config, language=state["project"].get("language", "auto"),
                                     speakers=speakers)
            except RewriteError as e:
                yield [status_html("failed", str(e)), "", gr.update(visible=False), ""]
                return
            label = config.describe()
            for j in rewrites.follow(job):
                yield job_updates(j, label)
        return fn

    inputs = set(all_inputs) | {panel.idea, *settings.inputs}
    for button, source in ((panel.rewrite_prompt, "prompt"), (panel.rewrite_idea, "idea")):
        button.click(start(source), inputs, outputs, concurrency_limit=None, concurrency_id="nava-rewrite",
                     api_visibility="private", show_progress="hidden")

    def cancel(request: gr.Request) -> None:
        gr.Info(rewrites.cancel(getattr(request, "session_hash", "") or ""))

    panel.cancel.click(cancel, None, None, api_visibility="private", queue=False)

    def accept(text: str):
        if not text:
            return [gr.update(), gr.update(), status_html("failed", "Nothing to accept."), "", gr.update(visible=False), ""]
        return [gr.update(value=True), gr.update(value=text),
                status_html("done", "Rewrite accepted: it is now the hand-edited prompt (voices stay on their lines)."),
                "", gr.update(visible=False), ""]

    panel.accept.click(accept, panel.proposal, [form["prompt_manual"], form["prompt_text"], *outputs],
                       api_visibility="private")
    panel.reject.click(lambda: [status_html("idle", "Rewrite rejected; the prompt is unchanged."), "",
                                gr.update(visible=False), ""], None, outputs, api_visibility="private")


CSS = """
.nava-diff {border: 1px solid #d1d5db; border-radius: 8px; padding: 10px; line-height: 1.6; white-space: pre-wrap;}
.nava-diff del.nava-del {background: #fee2e2; color: #991b1b;}
.nava-diff ins.nava-ins {background: #dcfce7; color: #14532d; text-decoration: none;}
.nava-diff .nava-span {background: #dbeafe; color: #1e3a8a; border-radius: 3px; padding: 0 2px;}
"""
