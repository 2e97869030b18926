"""The prompt checks every render path runs before queueing: Studio, API, Batch tab and `nava-render batch`.

Why one function: the Studio refused a preset whose dialogue cannot fit the clip while the Batch tab
rendered the same preset. Every path now asks `lint_problems` about the final request and refuses it
when the answer is not empty. The checks themselves are prompt_builder's lint (lint_project for a
request made by the builder, lint_text for a hand-written or hand-edited prompt), at the request's
own duration.
"""

from __future__ import annotations

from nava_core.request import RenderRequest


def lint_findings(request: RenderRequest) -> list:
    """prompt_builder's findings for a request of any origin: its project when the prompt is still what
    that project compiles to, else the prompt text itself (hand-written or hand-edited)."""
    import prompt_builder as pb  # lazy: pure Python, but the render engine must import without it

    if request.project:
        try:
            project = pb.Project.from_dict(request.project)
            if pb.compile_project(project).text.strip() == request.prompt.strip():
                return list(pb.lint_project(project, request.seconds))
        except (KeyError, TypeError, ValueError):
            pass  # an unreadable project: the prompt is what renders, lint that
    return list(pb.lint_text(request.prompt, request.seconds))


def lint_problems(request: RenderRequest) -> list[str]:
    """Blocking findings as 'where: message (fix)' lines; [] when the request may render."""
    if not request.prompt.strip():
        return ["prompt: it is empty (type a prompt, or let the builder compile one)"]
    return [f"{f.where}: {f.message}" + (f" ({f.fix})" if f.fix else "")
            for f in lint_findings(request) if _blocks(f, request.truncate_prompt)]


def _blocks(finding, truncate_prompt: bool) -> bool:
    """An error blocks; an over-long prompt blocks unless the request chose the release's truncation
    (the same rule as the studio's lint, app.builder._finding_dicts)."""
    if getattr(finding, "code", "") == "too-long":
        return not truncate_prompt
    return finding.severity == "error"
