"""The public API: /render, /lint and /compile (hidden components; typed str in, file or JSON out).

A /render call is a job like any other: it goes through `StudioService.submit` (lint, input checks,
the request finalised for the engine, the queue limits) into the one store, and History lists it.
/render waits for its job on the event loop (no worker thread held); /submit returns the job id at once
and /result fetches the file by that id.
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

import prompt_builder as pb
from nava_core.request import RequestError

from app.service import StudioError, StudioService, limit_key

PUBLIC = {"render", "submit", "result", "lint", "compile"}


def mount_api(service: StudioService) -> None:
    """Create the endpoints inside the page being built."""
    with gr.Row(visible=False):
        req = gr.Textbox()
        out_file = gr.File()
        proj = gr.Textbox()
        text = gr.Textbox()
        job_id = gr.Textbox()
        render_btn = gr.Button()
        submit_btn = gr.Button()
        result_btn = gr.Button()
        lint_btn = gr.Button()
        compile_btn = gr.Button()

    async def _render(request_json: str, request: gr.Request) -> str:
        return await api_render_async(service, request_json, request)

    def _submit(request_json: str, request: gr.Request) -> str:
        return api_submit(service, request_json, request)

    # /render waits on the event loop, so it needs no concurrency limit: the studio's queue limits (per
    # client, in total) bound the work, and the Gradio slots are sized to them (app.cli)
    render_btn.click(_render, req, out_file, api_name="render", concurrency_limit=None,
                     api_description="Render a request (RenderRequest JSON text); returns the MP4 file.")
    submit_btn.click(_submit, req, text, api_name="submit", concurrency_limit=None,
                     api_description="Queue a render request and return at once: {job_id, status, ahead} as JSON "
                                     "text; fetch the file with /result.")
    def _result(job_id_text: str, request: gr.Request) -> str:
        return api_result(service, job_id_text, request)

    result_btn.click(_result, job_id, out_file, api_name="result", concurrency_limit=None,
                     api_description="The file of a finished render, by the job_id /submit returned (to the same "
                                     "client or login only).")
    lint_btn.click(api_lint, proj, text, api_name="lint",
                   api_description="Lint a project (Project JSON text); returns findings as JSON text.")
    compile_btn.click(api_compile, proj, text, api_name="compile",
                      api_description="Compile a project (Project JSON text); returns {prompt, voices, span_speakers} JSON.")


def keep_api_to(demo: gr.Blocks, names: set[str] = PUBLIC) -> None:
    """Only the documented endpoints are public; UI events (row edits, tabs) stay out of the API page."""
    for fn in demo.fns.values():
        if fn.api_name not in names:
            fn.api_visibility = "private"


def client_id(request: Any) -> str:
    """Who a call counts against for the queue limits: the login when auth is on, else the browser or API
    client's session (every gradio_client instance has its own), else its address."""
    if request is None:
        return "local"
    user = getattr(request, "username", None)
    if user:
        return f"user:{user}"
    session = getattr(request, "session_hash", None)
    if session:
        return f"session:{session}"
    client = getattr(request, "client", None)
    return f"host:{getattr(client, 'host', '') or 'unknown'}"


def api_enqueue(service: StudioService, request_json: str, owner: str = "api") -> Any:
    """Check a /render or /submit request completely, then queue it; returns its job.

    Every field (nava_core.schema), every voice/image path (inside the uploads folder or an allowed
    root) and file (by content, length from the header) and the queue limits are checked before
    anything is queued or recorded, so a refused request leaves no trace.
    """
    from nava_core.schema import SchemaError, parse_json_text
    from nava_core.validation import InputError, check_request_dict

    try:  # parsed here so an over-long prompt is refused by name ("prompt ... limit"), not as a long JSON
        data = parse_json_text(request_json, "render request", MAX_REQUEST_JSON_CHARS) \
            if isinstance(request_json, (str, bytes)) else request_json
        request = check_request_dict(data, check_files=False)
    except (SchemaError, InputError, RequestError, ValueError) as e:
        raise gr.Error(f"invalid render request: {_one_line(e)}") from e
    try:
        return service.submit(None, owner=owner, request=request, source="api")
    except StudioError as e:
        raise gr.Error(_one_line(e)) from e


def _result_file(job: Any) -> str:
    result = job.result if job is not None else None
    if result is None:
        raise gr.Error((job.error if job is not None else "") or f"render {job.state if job else 'lost'}")
    return str(result.main)


def api_render(service: StudioService, request_json: str, owner: str = "api") -> str:
    """/render, blocking form (tests, scripts): the request in, the MP4 (WAV for audio-only) path out."""
    job = api_enqueue(service, request_json, owner)
    return _result_file(service.worker.wait(job.id))


async def api_render_async(service: StudioService, request_json: str, request: Any = None) -> str:
    """/render as served: checks and queues in a worker thread (fast), then waits on the event loop, so
    waiting renders hold no worker thread and /lint, /compile and the page stay responsive."""
    import asyncio

    import anyio

    job = await anyio.to_thread.run_sync(api_enqueue, service, request_json, client_id(request))
    while True:
        job = service.jobs.get(job.id)
        if job is None or job.finished:
            return _result_file(job)
        await asyncio.sleep(0.2)


def api_submit(service: StudioService, request_json: str, request: Any = None) -> str:
    """/submit: queue a render and return at once: {"job_id", "status", "ahead"} as JSON text."""
    job = api_enqueue(service, request_json, client_id(request))
    return json.dumps({"job_id": str(job.id), "status": job.state, "ahead": service.jobs_ahead(job.id)})


def api_result(service: StudioService, job_id: str, request: Any = None) -> str:
    """/result: the file of a finished render by job id; a clear error while it waits, runs or failed.

    Only the client (or login) that submitted the job gets it: job ids are small counters, so another
    client's id is answered exactly like an id that does not exist."""
    text = str(job_id or "").strip()
    if not text.isdigit() or len(text) > 18:
        raise gr.Error("invalid job id: send the job_id /submit returned")
    job = service.jobs.get(int(text))
    if job is None or job.batch_id or limit_key(job.owner) != client_id(request):
        raise gr.Error(f"no render {text} in this studio's queue")
    if job.state == "queued":
        raise gr.Error(f"render {text} is queued, {service.jobs_ahead(job.id)} ahead of it; ask again later")
    if job.state == "running":
        raise gr.Error(f"render {text} is running; ask again later")
    return _result_file(job)


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
    from nava_core.schema import SchemaError, parse_json_text
    from nava_core.validation import InputError, check_text

    try:
        text = check_text(project_json, MAX_PROJECT_JSON_CHARS, "project JSON")
        try:
            data = parse_json_text(text, "project JSON", MAX_PROJECT_JSON_CHARS)
        except SchemaError as e:
            if "not valid JSON" not in str(e):
                raise
            data = None  # Project.from_json reports the syntax error below
        if data is not None:
            _check_project_texts(data)
    except (InputError, SchemaError) as e:
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
