"""The public API: /render, /lint and /compile (hidden components; typed str in, file or JSON out).

A /render call is a job like any other: it goes through `StudioService.submit` (lint, input checks,
the request finalised for the engine) into the one store, and History lists it.
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

import prompt_builder as pb
from nava_core.request import RequestError

from app.service import StudioError, StudioService

PUBLIC = {"render", "lint", "compile"}


def mount_api(service: StudioService) -> None:
    """Create the endpoints inside the page being built."""
    with gr.Row(visible=False):
        req = gr.Textbox()
        out_file = gr.File()
        proj = gr.Textbox()
        text = gr.Textbox()
        render_btn = gr.Button()
        lint_btn = gr.Button()
        compile_btn = gr.Button()
    render_btn.click(lambda s: api_render(service, s), req, out_file, api_name="render", concurrency_limit=None,
                     api_description="Render a request (RenderRequest JSON text); returns the MP4 file.")
    lint_btn.click(api_lint, proj, text, api_name="lint",
                   api_description="Lint a project (Project JSON text); returns findings as JSON text.")
    compile_btn.click(api_compile, proj, text, api_name="compile",
                      api_description="Compile a project (Project JSON text); returns {prompt, voices, span_speakers} JSON.")


def keep_api_to(demo: gr.Blocks, names: set[str] = PUBLIC) -> None:
    """Only the documented endpoints are public; UI events (row edits, tabs) stay out of the API page."""
    for fn in demo.fns.values():
        if fn.api_name not in names:
            fn.api_visibility = "private"


def api_render(service: StudioService, request_json: str) -> str:
    """/render: a render request as JSON text in, the MP4 (WAV for audio-only) path out.

    Every field and every voice/image file is checked (nava_core.validation) before anything is
    queued, so a refused request never reaches the queue or the history.
    """
    from nava_core.validation import InputError, check_request_dict

    data: Any = request_json
    if isinstance(request_json, str) and len(request_json) <= MAX_REQUEST_JSON_CHARS:
        try:  # parsed here so an over-long prompt is refused by name ("prompt ... limit"), not as a long JSON
            data = json.loads(request_json)
        except json.JSONDecodeError:
            pass  # check_request_dict says where the syntax error is
    try:
        request = check_request_dict(data, check_files=True)
    except InputError as e:
        raise gr.Error(f"invalid render request: {_one_line(e)}") from e
    except (RequestError, ValueError) as e:
        raise gr.Error(f"invalid render request: {_one_line(e)}") from e
    try:
        job = service.render_blocking(request)
    except StudioError as e:
        raise gr.Error(str(e)) from e
    result = job.result if job is not None else None
    if result is None:
        raise gr.Error((job.error if job is not None else "") or f"render {job.state if job else 'lost'}")
    return str(result.main)


MAX_PROJECT_JSON_CHARS = 200_000
MAX_REQUEST_JSON_CHARS = 16 * 1024 * 1024  # larger JSON is refused unparsed
MAX_PROJECT_FIELD_CHARS = 20_000


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _check_project_texts(value: Any, where: str = "project") -> None:
    """Every string in the project (scene, lines, cast, ...) passes check_text: no NUL/control characters."""
    from nava_core.validation import check_text

    if isinstance(value, str):
        check_text(value, MAX_PROJECT_FIELD_CHARS, where, allow_empty=True)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_project_texts(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_project_texts(v, f"{where}[{i}]")


def _project_from_text(project_json: str) -> pb.Project:
    """Parse /lint and /compile input, refusing control characters and over-long text first."""
    from nava_core.validation import InputError, check_text

    try:
        text = check_text(project_json, MAX_PROJECT_JSON_CHARS, "project JSON")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # Project.from_json reports the syntax error below
        if data is not None:
            _check_project_texts(data)
    except InputError as e:
        raise gr.Error(f"invalid project: {_one_line(e)}") from e
    try:
        return pb.Project.from_json(text)
    except (pb.SchemaError, ValueError) as e:
        raise gr.Error(f"invalid project: {_one_line(e)}") from e


def api_lint(project_json: str) -> str:
    """/lint: a project as JSON text in, findings as a JSON list out."""
    project = _project_from_text(project_json)
    findings = pb.lint_project(project, project.seconds)
    return json.dumps([{"severity": f.severity, "where": f.where, "message": f.message, "fix": f.fix}
                       for f in findings], ensure_ascii=False)


def api_compile(project_json: str) -> str:
    """/compile: a project as JSON text in, {"prompt", "voices", "span_speakers"} as JSON out."""
    compiled = pb.compile_project(_project_from_text(project_json))
    return json.dumps({"prompt": compiled.text, "voices": list(compiled.voices),
                       "span_speakers": list(compiled.span_speakers)}, ensure_ascii=False)
