"""The Studio tab's queue list: every unfinished render in line, this browser's recent ones, and a
cancel button per job.

Why a list and not a spinner: a second Render click while one runs is a second job, and a person must
see it waiting (position, state) and be able to drop it. The list is HTML redrawn by the page's timer;
a cancel button writes its job id into a hidden textbox (`CANCEL_BOX`) and fires its input event, the
pattern the timeline's drag edits use.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

CANCEL_BOX = "queue-cancel"
STATE_LABELS = {"queued": "waiting", "running": "rendering", "done": "done", "failed": "failed",
                "cancelled": "cancelled"}


@dataclass(frozen=True)
class QueueRow:
    """One job as the list shows it."""

    id: int
    state: str
    title: str
    position: int  # 0 = rendering now, n = n renders ahead; -1 = finished
    detail: str = ""  # progress ("step 12/50") or the error
    mine: bool = False
    source: str = "studio"


def queue_html(rows: list[QueueRow]) -> str:
    """The list; an empty queue says so (the list never silently disappears)."""
    if not rows:
        return '<div class="nava-queue-empty">No renders waiting. Press Render to queue one.</div>'
    body = []
    for r in rows:
        where = {0: "now"}.get(r.position, f"{r.position} ahead" if r.position > 0 else "")
        cancel = (f'<button type="button" data-cancel="{r.id}" title="Cancel render #{r.id}">Cancel</button>'
                  if r.mine and r.state in ("queued", "running") else "")
        cls = "nava-mine" if r.mine else ""
        who = "" if r.mine else f" ({html.escape(r.source)})"
        body.append(
            f'<tr data-job="{r.id}" data-state="{html.escape(r.state)}" class="{cls}">'
            f"<td>#{r.id}</td><td>{html.escape(r.title or 'untitled')}{who}</td>"
            f"<td>{STATE_LABELS.get(r.state, html.escape(r.state))}</td><td>{html.escape(where)}</td>"
            f"<td>{html.escape(r.detail)}</td><td>{cancel}</td></tr>")
    return ('<table><thead><tr><th>job</th><th>title</th><th>state</th><th>position</th><th>progress</th>'
            f'<th></th></tr></thead><tbody>{"".join(body)}</tbody></table>')


# Runs once when the gr.HTML mounts; the table is replaced on every redraw, so the listener is delegated.
QUEUE_JS = r"""
element.addEventListener('click', e => {
  const btn = e.target.closest('button[data-cancel]');
  if (!btn) return;
  const box = document.querySelector('#%s textarea, #%s input');
  if (!box) return;
  btn.disabled = true;
  btn.textContent = 'Cancelling…';
  box.value = btn.dataset.cancel + ':' + Date.now();
  box.dispatchEvent(new Event('input', {bubbles: true}));
});
""" % (CANCEL_BOX, CANCEL_BOX)
