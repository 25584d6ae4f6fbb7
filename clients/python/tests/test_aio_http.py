"""``throttle_client.aio._http``, the asyncio client's HTTP/1.1: parsing answers byte by byte,
and keep-alive connections the server closes."""

from __future__ import annotations

import asyncio
from typing import List, Optional, Tuple

import pytest

from throttle_client.aio._http import MalformedAnswer, Pool, _parse

# Bytes on the wire, and the answer they hold: (status, text, keep-alive).
ANSWERS = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n42", (200, "42", True)),
    (b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n", (202, "", True)),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n7", (200, "7", False)),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n7", (200, "7", False)),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n7", (200, "7", True)),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n42\r\n1;x=y\r\n!\r\n0\r\n\r\n",
     (200, "42!", True)),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-Trailer: 1\r\n\r\n",
     (200, "a", True)),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n\r\n"
     b"Unknown peer", (400, "Unknown peer", True)),
    (b"HTTP/1.1 204 No Content\r\n\r\n", (204, "", True)),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\xc3\xa9t\xc3", (200, "\u00e9t\ufffd", True)),
]


@pytest.mark.parametrize("wire,expected", ANSWERS)
def test_an_answer_parses_only_once_complete(
    wire: bytes, expected: Tuple[int, str, bool]
) -> None:
    for cut in range(len(wire)):
        assert _parse(bytearray(wire[:cut]), complete=False) is None, wire[:cut]
    parsed = _parse(bytearray(wire), complete=False)
    assert parsed is not None
    assert (parsed.answer.status_code, parsed.answer.text, parsed.keep_alive) == expected
    assert parsed.end == len(wire)


def test_an_answer_without_a_length_ends_with_the_connection() -> None:
    wire = bytearray(b"HTTP/1.1 200 OK\r\nFencing-Token: 3\r\n\r\nall of it")
    assert _parse(wire, complete=False) is None
    parsed = _parse(wire, complete=True)
    assert parsed is not None
    assert parsed.answer.text == "all of it" and not parsed.keep_alive
    assert parsed.answer.headers["fencing-token"] == "3"


@pytest.mark.parametrize(
    "wire",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_bytes_that_are_no_answer_are_malformed(wire: bytes) -> None:
    with pytest.raises(MalformedAnswer):
        _parse(bytearray(wire), complete=False)


@pytest.mark.anyio
async def test_a_keep_alive_connection_the_server_closed_is_replaced_unnoticed() -> None:
    # A server that answers one request per connection and then closes it, without saying
    # so: the client keeps the connection for reuse, and finds it closed at the next request.
    connections: List[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}", connect_timeout=5)
    try:
        for _ in range(3):
            answer = await pool.request("GET", "/remainder?semaphore=A", {}, None, 5)
            assert answer.status_code == 200 and answer.text == "1"
    finally:
        pool.close()
        server.close()
        await server.wait_closed()
    assert len(connections) == 3


@pytest.mark.anyio
async def test_the_request_on_the_wire() -> None:
    received: List[bytes] = []
    done: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readexactly(4)
        received.append(head + body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n7")
        await writer.drain()
        await done
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}/prefix/", connect_timeout=5)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer t"}
    body: Optional[str] = '"é"'
    try:
        answer = await pool.request("PUT", "/peers/1/A?block_for=0ms", headers, body, 5)
        assert answer.text == "7"
    finally:
        done.set_result(None)
        pool.close()
        server.close()
        await server.wait_closed()
    assert received == [
        b"PUT /prefix/peers/1/A?block_for=0ms HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"User-Agent: throttle-client-aio\r\n"
        b"Content-Type: application/json\r\n"
        b"Authorization: Bearer t\r\n"
        b"Content-Length: 4\r\n\r\n"
        b'"\xc3\xa9"'
    ]
