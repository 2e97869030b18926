"""The prompt checks every render path runs before queueing: Studio, API, Batch tab and `nava-render batch`.

Why one function: the Studio refused a preset whose dialogue cannot fit the clip while the Batch tab
rendered the same preset. Every path now asks `lint_problems` about the final request and refuses it
when the answer is not empty. The checks themselves are prompt_builder's lint (lint_project for a
request made by the builder, lint_text for a hand-written or hand-edited prompt), at the request's
own duration.
"""

from __future__ import annotations

from nava_core.request import RenderRequest


def lint_problems(request: RenderRequest) -> list[str]:
    """Blocking lint findings for a request as 'where: message (fix)' lines; [] when it may render.

    The builder's project is linted when the prompt is still what it compiles to; a prompt edited by
    hand (or sent without a project) is linted as text.
    """
    import prompt_builder as pb  # lazy: pure Python, but the render engine must import without it

    findings = None
    if request.project:
        try:
            project = pb.Project.from_dict(request.project)
            if pb.compile_project(project).text.strip() == request.prompt.strip():
                findings = pb.lint_project(project, request.seconds)
        except (KeyError, TypeError, ValueError):
            findings = None  # an unreadable project: the prompt is what renders, lint that
    if findings is None:
        findings = pb.lint_text(request.prompt, request.seconds)
    if not request.prompt.strip():
        return ["prompt: it is empty (type a prompt, or let the builder compile one)"]
    return [f"{f.where}: {f.message}" + (f" ({f.fix})" if f.fix else "") for f in findings if f.severity == "error"]
