"""Tests of the wire check's own normalising (``scripts/wire-check``): what it masks, and that
it masks nothing else. The check itself runs against the real server in ``scripts/test``.

Run by ``clients/python/run-tests`` beside the harness's tests; needs no server.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "wire-check"


def load_script() -> ModuleType:
    """The script as a module (its file name has no ``.py``, so it is loaded by path)."""
    loader = importlib.machinery.SourceFileLoader("wire_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("wire_check", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["wire_check"] = module  # dataclasses look their module up by name
    loader.exec_module(module)
    return module


wire = load_script()

PEERS: Dict[str, int] = {"P1": 4242424242424242, "P2": 1111111111111111}


def test_peer_ids_are_masked_as_whole_numbers_only() -> None:
    text = '{"id":4242424242424242,"other":42424242424242421,"p":1111111111111111}'
    assert wire.mask_peers(text, PEERS) == (
        '{"id":{P1},"other":42424242424242421,"p":{P2}}')


def test_clock_tokens_become_their_rank_and_chosen_tokens_stay() -> None:
    answers = [
        "HTTP/1.1 200 OK\r\nFencing-Token: 1700000000000020\r\n\r\nAcquired",
        '{"fencing_tokens":{"A":1700000000000010,"B c ü":17},"id":42}',
        '[{"fencing_token":1700000000000020,"semaphore":"A"}]',
        "throttle_next_fencing_token 1700000000000021\nthrottle_peers 1700000000000099\n",
    ]
    ranks = {token: rank for rank, token in enumerate(wire.clock_tokens(answers), start=1)}
    masked = [wire.mask_tokens(text, ranks) for text in answers]
    assert masked == [
        "HTTP/1.1 200 OK\r\nFencing-Token: <token 2>\r\n\r\nAcquired",
        '{"fencing_tokens":{"A":<token 1>,"B c ü":17},"id":42}',
        '[{"fencing_token":<token 2>,"semaphore":"A"}]',
        # Only the metric of the next token is a token; other large values are not.
        "throttle_next_fencing_token <token 3>\nthrottle_peers 1700000000000099\n",
    ]


def test_timings_are_masked_but_metric_names_labels_and_counts_stay() -> None:
    metrics = (
        'throttle_request_duration_seconds_bucket{route="acquire",le="0.001"} 3\n'
        'throttle_request_duration_seconds_sum{route="acquire"} 0.000017136\n'
        'throttle_request_duration_seconds_count{route="acquire"} 3\n'
        'throttle_longest_pending_sec{semaphore="B c ü"} 0.3\n'
        "throttle_grace_remaining_seconds 0\n"
        'throttle_requests_total{route="acquire",status="200"} 3\n'
        'throttle_max{semaphore="A"} 2\n'
    )
    assert wire.mask_timings(metrics) == (
        'throttle_request_duration_seconds_bucket{route="acquire",le="0.001"} <t>\n'
        'throttle_request_duration_seconds_sum{route="acquire"} <t>\n'
        'throttle_request_duration_seconds_count{route="acquire"} 3\n'
        'throttle_longest_pending_sec{semaphore="B c ü"} <t>\n'
        "throttle_grace_remaining_seconds <t>\n"
        'throttle_requests_total{route="acquire",status="200"} 3\n'
        'throttle_max{semaphore="A"} 2\n'
    )
    body = ('{"expires_in_ms":299000,"longest_pending_ms":null,"grace_remaining_ms":12,'
            '"pending":{"count":2,"waited_ms":307},"max":2}')
    assert wire.mask_timings(body) == (
        '{"expires_in_ms":<ms>,"longest_pending_ms":null,"grace_remaining_ms":<ms>,'
        '"pending":{"count":2,"waited_ms":<ms>},"max":2}')


def test_a_peer_list_in_id_order_is_shown_in_a_fixed_order() -> None:
    listed = ('[{"id":42,"name":"a"},{"id":1111111111111111,"name":null},'
              '{"id":4242424242424242,"name":"b, {c}"}]')
    assert wire.order_peers(listed, PEERS) == (
        '[{"id":42,"name":"a"},{"id":4242424242424242,"name":"b, {c}"},'
        '{"id":1111111111111111,"name":null}]')


def test_a_peer_list_out_of_id_order_is_kept_and_flagged() -> None:
    listed = '[{"id":4242424242424242},{"id":42}]'
    assert wire.order_peers(listed, PEERS) == (
        listed + "\n<wire-check: the peers are not in the order of their ids>")
    assert wire.order_peers('{"id":42}', PEERS) == '{"id":42}'


def test_pipelined_answers_are_cut_by_their_content_length() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOk"
           b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nNot found trailing")
    responses = wire.split_responses(raw)
    assert [(response.head, response.body) for response in responses] == [
        ([b"HTTP/1.1 200 OK", b"Content-Length: 2"], b"Ok"),
        ([b"HTTP/1.1 404 Not Found", b"Content-Length: 9"], b"Not found"),
        ([], b" trailing"),  # bytes after the last answer: shown, not dropped
    ]


@pytest.mark.parametrize("masked", [False, True])
def test_date_is_masked_and_content_length_only_where_the_body_was(masked: bool) -> None:
    body = b"4242424242424242" if masked else b"Ok"
    raw = (b"HTTP/1.1 200 OK\r\nServer: tiny-http (Rust)\r\n"
           b"Date: Sun, 06 Dec 2026 23:20:12 GMT\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\n\r\n" + body)
    (response,) = wire.split_responses(raw)
    lines = wire.normalise_response(response, lambda text: wire.mask_peers(text, PEERS))
    assert lines == [
        "< HTTP/1.1 200 OK",
        "< Server: tiny-http (Rust)",
        "< Date: <date>",
        "< Content-Length: <masked>" if masked else "< Content-Length: 2",
        "<",
        "< {P1}" if masked else "< Ok",
        "< \\ no newline at the end of the body",
    ]


def test_binary_bodies_are_shown_as_length_and_digest_and_control_characters_escaped() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nContent-Type: image/x-icon\r\nContent-Length: 2\r\n\r\n\xff\x00"
           b"HTTP/1.1 400 Bad Request\r\nX: a\rb\r\nContent-Length: 4\r\n\r\nA\tB\n")
    first, second = wire.split_responses(raw)
    assert wire.normalise_response(first, str)[-1].startswith("< <2 bytes, sha256 ")
    assert wire.normalise_response(second, str) == [
        "< HTTP/1.1 400 Bad Request", "< X: a\\rb", "< Content-Length: 4", "<", "< A\\tB"]
