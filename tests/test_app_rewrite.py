"""The studio's rewrite jobs (app.rewrites) and diff (app.rewrite_panel), against the local chat server."""

from __future__ import annotations

import threading

import pytest

from app.rewrite_panel import diff_html, job_updates
from app.rewrites import RewriteService
from nava_core.rewriting import RewriteConfig
from prompt_builder.rewrite import RewriteError
from tests.chat_server import ChatServer, ServerState, expand

PROMPT = "A man on the left says <S>Hello.<E> A woman on the right answers <S>Hi.<E>"


@pytest.fixture()
def server():  # noqa: ANN201
    with ChatServer(ServerState(delay_s=0.3)) as s:
        yield s


def service_for(server: ChatServer, **kw: object) -> RewriteService:
    return RewriteService(RewriteConfig(endpoint=server.url, model="writer"), **kw)  # type: ignore[arg-type]


def test_a_job_runs_beside_everything_and_ends_with_the_rewrite(server: ChatServer) -> None:
    rw = service_for(server)
    job = rw.start(PROMPT, owner="page-1", speakers=["man", "woman"])
    views = [(j.status, j.partial) for j in rw.follow(job, interval=0.05)]
    assert views[0][0] == "running" and views[-1][0] == "done"
    assert job.result is not None and job.result.accepted and job.result.text == expand(PROMPT)
    status, diff, decide, proposal = job_updates(job, "writer")
    assert 'data-status="done"' in status and proposal == expand(PROMPT) and decide["visible"] is True
    assert 'class="nava-ins"' in diff and diff.count('class="nava-span"') == 2
    rw.close()


def test_one_running_rewrite_per_page_and_cancel(server: ChatServer) -> None:
    server.state.delay_s = 2.0
    rw = service_for(server)
    job = rw.start(PROMPT, owner="page-1")
    with pytest.raises(RewriteError, match="already running for this page"):
        rw.start(PROMPT, owner="page-1")
    other = rw.start(PROMPT, owner="page-2")  # another page is not held up
    assert rw.cancel("page-1") == "Cancelling the rewrite…"
    list(rw.follow(job, interval=0.05))
    assert job.status == "cancelled"
    assert 'data-status="cancelled"' in job_updates(job, "x")[0]
    list(rw.follow(other, interval=0.05))
    assert other.status == "done"
    rw.close()


def test_refusals_before_anything_runs(server: ChatServer) -> None:
    rw = service_for(server)
    with pytest.raises(RewriteError, match="nothing to rewrite"):
        rw.start("   ", owner="p")
    with pytest.raises(RewriteError, match="at most"):
        rw.start("x" * 30_000, owner="p")
    with pytest.raises(RewriteError, match="no rewriter configured"):
        RewriteService(RewriteConfig()).start(PROMPT, owner="p")
    assert server.state.chat_requests == 0


def test_page_settings_override_the_defaults_for_that_call_only(server: ChatServer) -> None:
    rw = RewriteService(RewriteConfig(local_model="/some/model"))
    cfg = rw.settings(endpoint=server.url, model="learner", api_key="sk-page")
    assert (cfg.endpoint, cfg.model, cfg.local_model) == (server.url, "learner", "")
    assert rw.config.local_model == "/some/model" and rw.config.endpoint == ""  # defaults untouched
    job = rw.start(PROMPT, owner="p", config=cfg)
    list(rw.follow(job, interval=0.05))
    assert job.result is not None and job.result.accepted and job.result.attempts == 2
    local = rw.settings(local_model="/other")
    assert local.endpoint == "" and local.local_model == "/other"


def test_diff_marks_removed_and_added_words() -> None:
    html = diff_html("a quiet <S>Hi.<E> room", "a loud <S>Hi.<E> room now")
    assert '<del class="nava-del">quiet</del><ins class="nava-ins">loud</ins>' in html
    assert '<span class="nava-span">&lt;S&gt;Hi.&lt;E&gt;</span>' in html and '<ins class="nava-ins"> now</ins>' in html


def test_every_shipped_preset_passes_its_own_checks() -> None:
    """The identity rewrite of each preset's compiled prompt must pass (speaker names as the compiler writes
    them, the project's language, the token budget): otherwise no rewrite of it could ever be accepted."""
    import prompt_builder as pb
    from app import builder as B
    from app import handlers as H
    from app.rewrite_panel import speaker_names
    from prompt_builder.rewrite import check_rewrite

    for name in [H.BUILTIN_PRESET, *pb.list_presets()]:
        state = H.load_preset_state(name)
        compiled = B.compile_state(state)
        names = speaker_names(state, compiled.span_speakers)
        assert check_rewrite(compiled.text, compiled.text, language=state["project"]["language"],
                             speakers=names) == [], name


def test_studio_flags_set_the_default_and_only_a_private_studio_lets_pages_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from app.cli import _rewrites, build_parser

    monkeypatch.delenv("SPACE_ID", raising=False)
    service = SimpleNamespace(engine=SimpleNamespace(gpu_lock=threading.RLock()))  # only its lock is used
    args = build_parser().parse_args(["--rewrite-endpoint", "http://127.0.0.1:9/v1", "--rewrite-model", "m"])
    rw = _rewrites(args, service)
    assert rw.editable and (rw.config.endpoint, rw.config.model) == ("http://127.0.0.1:9/v1", "m")
    assert not _rewrites(build_parser().parse_args(["--host", "0.0.0.0"]), service).editable
    assert not _rewrites(build_parser().parse_args(["--share"]), service).editable
