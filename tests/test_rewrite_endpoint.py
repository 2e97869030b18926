"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (tests/chat_server.py)."""

from __future__ import annotations

import socket
import threading

import pytest

from nava_core.progress import CancelToken
from nava_core.rewriting import config_from_env, make_rewriter
from prompt_builder.rewrite import RewriteError, Rewriter
from prompt_builder.rewrite_endpoint import EndpointBackend
from tests.chat_server import ChatServer, ServerState, expand

IDEA = "A fisherman on the left says <S>The tide is turning.<E> His daughter on the right answers <S>Then we go.<E>"
SPEAKERS = ["fisherman", "daughter"]


@pytest.fixture()
def server():  # noqa: ANN201
    with ChatServer(ServerState(api_key="sk-test")) as s:
        yield s


def rewriter(server: ChatServer, model: str = "writer", *, key: str = "sk-test", stream: bool = True,
             timeout_s: float = 10.0, attempts: int = 3) -> Rewriter:
    backend = EndpointBackend(server.url, model=model, api_key=key, stream=stream, timeout_s=timeout_s)
    return Rewriter(backend, max_attempts=attempts)


@pytest.mark.parametrize("stream", [True, False])
def test_rewrite_keeps_lines_and_drops_thinking(server: ChatServer, stream: bool) -> None:
    seen: list[str] = []
    r = rewriter(server, stream=stream)
    result = r.rewrite(IDEA, speakers=SPEAKERS, on_text=seen.append)
    assert result.accepted and result.attempts == 1
    # the server thinks (inline <think> with a fake line in it, and reasoning_content); neither survives
    assert result.text == expand(IDEA)
    assert "<think>" not in result.text and "not this" not in result.text
    if stream:  # progress arrived piece by piece, the text growing
        assert len(seen) > 5 and all(len(a) <= len(b) for a, b in zip(seen, seen[1:]))


def test_a_retry_that_fixes_itself(server: ChatServer) -> None:
    result = rewriter(server, "learner").rewrite(IDEA, speakers=SPEAKERS)
    assert result.accepted and result.attempts == 2 and result.text == expand(IDEA)
    assert server.state.chat_requests == 2


def test_a_model_that_keeps_rewording_a_line_falls_back(server: ChatServer) -> None:
    result = rewriter(server, "paraphraser", attempts=2).rewrite(IDEA)
    assert not result.accepted and result.text == IDEA and result.attempts == 2
    assert "line 1 changed: 'The tide is turning.' became 'THE TIDE IS TURNING.!'" in result.message


def test_a_list_answer_is_refused(server: ChatServer) -> None:
    result = rewriter(server, "lister", attempts=1).rewrite(IDEA)
    assert not result.accepted and "not one paragraph" in result.message


@pytest.mark.parametrize("stream", [True, False])
def test_a_reply_cut_off_at_the_token_limit_is_never_used(server: ChatServer, stream: bool) -> None:
    # the cut-off text quotes every line in order and is English: only finish_reason tells it is unfinished
    result = rewriter(server, "rambler", stream=stream, attempts=2).rewrite(IDEA)
    assert not result.accepted and result.text == IDEA and result.attempts == 2
    assert "cut off at the token limit" in result.message


def test_model_chosen_from_the_server_list_when_not_named(server: ChatServer) -> None:
    backend = EndpointBackend(server.url, api_key="sk-test")
    assert backend.resolve_model() == "writer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case, kind, words", [
    ("unreachable", "unreachable", "cannot reach the rewrite endpoint"),
    ("no-such-model", "model_not_found", "model 'gpt-none' was not found"),
    ("wrong-key", "auth", "refused the API key (HTTP 401: Incorrect API key provided.)"),
    ("busy", "rate_limit", "is rate-limiting requests (HTTP 429"),
    ("slow", "timeout", "did not answer within 0.5 s"),
])
def test_errors_in_plain_words(server: ChatServer, case: str, kind: str, words: str) -> None:
    server.state.slow_s = 3.0
    url, model, key = server.url, {"no-such-model": "gpt-none"}.get(case, case), "sk-test"
    if case == "unreachable":
        url = f"http://127.0.0.1:{_free_port()}/v1"
    if case == "wrong-key":
        model, key = "writer", "sk-wrong"
    backend = EndpointBackend(url, model=model, api_key=key, timeout_s=0.5)
    with pytest.raises(RewriteError) as err:
        backend.complete([{"role": "user", "content": "Input:\nx"}])
    assert err.value.kind == kind and words in str(err.value), str(err.value)
    assert "sk-" not in str(err.value)  # the key never appears in a message
    # through the rewriter: the original comes back, with the reason
    result = Rewriter(backend, max_attempts=2, retry_wait_s=lambda s: None).rewrite(IDEA)
    assert not result.accepted and result.text == IDEA and words in result.message and result.error_kind == kind


def test_cancel_stops_a_streaming_rewrite(server: ChatServer) -> None:
    cancel = CancelToken()
    pieces: list[str] = []

    def on_text(t: str) -> None:
        pieces.append(t)
        if len(pieces) == 3:
            cancel.cancel()

    with pytest.raises(RewriteError) as err:
        rewriter(server).rewrite(IDEA, cancel=cancel, on_text=on_text)
    assert err.value.kind == "cancelled" and len(pieces) == 3


def test_config_from_env_and_flags_never_shows_the_key(server: ChatServer) -> None:
    env = {"NAVA_REWRITE_ENDPOINT": server.url, "NAVA_REWRITE_KEY": "sk-test", "NAVA_REWRITE_MODEL": "nope"}
    config = config_from_env(env, model="writer")
    assert "sk-test" not in repr(config) and "sk-test" not in config.describe()
    r = make_rewriter(config)
    assert "sk-test" not in repr(r)
    assert r.rewrite(IDEA).accepted
    with pytest.raises(RewriteError, match="no rewriter configured"):
        make_rewriter(config_from_env({}))
    with pytest.raises(RewriteError, match="must be an http"):
        make_rewriter(config_from_env({}, endpoint="127.0.0.1:8000"))


def test_one_backend_serves_many_threads(server: ChatServer) -> None:
    server.state.delay_s = 0.2
    r = rewriter(server)
    out: list[bool] = []
    threads = [threading.Thread(target=lambda: out.append(r.rewrite(IDEA).accepted)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [True] * 4 and server.state.max_in_flight == 4
