"""A small HTTP/1.1 client on asyncio's transports, for the few requests ``AsyncClient`` sends.

What it speaks: one request at a time per connection, a body given whole (JSON text), answers
framed by ``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the connection,
keep-alive, ``http`` and ``https``. What it leaves out, because a Throttle server never needs
it: redirects, compression, cookies, proxies, HTTP/2. It exists because the client spends most
of its time per request in the HTTP library; this one does per request what a Throttle request
needs and no more (one write, one parse of a small answer, one timer), and its pool hands out an
idle connection in constant time however many long polls are open.

Failures are ``OSError``s: the socket's own (``ConnectionRefusedError``, ``socket.gaierror``,
``ssl.SSLError``), ``TimeoutError`` when no answer came in time, and ``MalformedAnswer`` (a
``ConnectionError``) for bytes that are no HTTP answer or a connection closed in the middle of
one. The client maps them all to ``ServerUnavailable``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Dict, List, NamedTuple, Optional
from urllib.parse import urlsplit

__all__ = ["Answer", "InvalidURL", "MalformedAnswer", "Pool"]

# An answer's head (status line and headers) longer than this is no Throttle server's.
_MAX_HEAD = 64 * 1024

# Sent as `User-Agent`, so a server's access log tells this client apart.
_USER_AGENT = "throttle-client-aio"


class Answer(NamedTuple):
    """A server's answer: status, body as text, headers by lower-case name."""

    status_code: int
    text: str
    headers: Dict[str, str]


class InvalidURL(ValueError):
    """A server URL that is no ``http`` or ``https`` URL."""


class MalformedAnswer(ConnectionError):
    """The server's bytes are no HTTP/1.x answer, or the connection ended inside one."""


class _Unanswered(MalformedAnswer):
    """The connection closed before a single byte of the answer: on a reused keep-alive
    connection, the server had closed it as idle just as the request went out."""


class Pool:
    """The keep-alive connections to one server (``base_url``), on the running event loop.

    ``request`` takes an idle connection (the one used last, so the others may time out on the
    server) or opens one, and puts it back after a complete answer the server did not mark
    ``Connection: close``. A connection is never shared by two requests at a time; how many
    are open at once is up to the callers (``AsyncClient`` bounds them).
    """

    def __init__(self, base_url: str, connect_timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidURL(f"not an http or https URL: {base_url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = 443 if self._tls else 80
        self._host_header = host if self._port == default_port else f"{host}:{self._port}"
        self._prefix = parts.path.rstrip("/")
        self._connect_timeout = connect_timeout
        self._idle: List[_Connection] = []
        self._closed = False

    async def request(
        self,
        method: str,
        path: str,
        headers: Dict[str, str],
        body: Optional[str],
        timeout: float,
    ) -> Answer:
        """Send one request and return its answer; ``timeout`` bounds the wait for the answer
        once the request is written (connecting has its own bound)."""
        data = self._encode(method, path, headers, body)
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            try:
                return await self._exchange(connection, data, timeout)
            except _Unanswered:
                continue  # Closed by the server as idle: no harm done, take another.
        connection = await self._connect()
        return await self._exchange(connection, data, timeout)

    def close(self) -> None:
        """Close the idle connections; those in use close when their answers are in. A closed
        pool still sends requests, each on a connection of its own."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _exchange(self, connection: "_Connection", data: bytes, timeout: float) -> Answer:
        try:
            answer = await connection.exchange(data, timeout)
        except BaseException:
            # A timeout, a cancellation or a broken answer leaves the connection in an unknown
            # state: nothing more is read from it.
            connection.close()
            raise
        if connection.reusable and not self._closed:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def _connect(self) -> "_Connection":
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, connection = await loop.create_connection(
                lambda: _Connection(loop),
                self._host,
                self._port,
                ssl=_tls_context() if self._tls else None,
            )
        return connection

    def _encode(
        self, method: str, path: str, headers: Dict[str, str], body: Optional[str]
    ) -> bytes:
        lines = [
            f"{method} {self._prefix}{path} HTTP/1.1",
            f"Host: {self._host_header}",
            f"User-Agent: {_USER_AGENT}",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        content = b"" if body is None else body.encode("utf-8")
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(content)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content


_tls: Optional[ssl.SSLContext] = None


def _tls_context() -> ssl.SSLContext:
    """The system's trusted certificates, loaded once per process (loading takes a while)."""
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


class _Connection(asyncio.Protocol):
    """One connection: writes a request, collects the bytes of its answer, parses it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: Optional[asyncio.Transport] = None
        self._buffer = bytearray()
        self._waiter: Optional["asyncio.Future[Answer]"] = None
        self.closed = False
        self.reusable = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None and not self._waiter.done():
            try:
                answer = _parse(self._buffer, complete=False)
            except MalformedAnswer as error:
                self._waiter.set_exception(error)
                return
            if answer is not None:
                self._finish(answer)

    def eof_received(self) -> bool:
        return False  # Close the transport; connection_lost completes or fails the answer.

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if not self._buffer:
            waiter.set_exception(
                _Unanswered("the server closed the connection without answering")
            )
            return
        try:
            # An answer framed by the end of the connection is complete now.
            answer = _parse(self._buffer, complete=True)
        except MalformedAnswer as error:
            waiter.set_exception(error)
            return
        if answer is None:
            waiter.set_exception(MalformedAnswer("the connection closed inside the answer"))
        else:
            self._finish(answer)

    # Requests

    async def exchange(self, data: bytes, timeout: float) -> Answer:
        """Write the request ``data`` and wait at most ``timeout`` seconds for its answer."""
        assert self._transport is not None and self._waiter is None
        if self._buffer:
            # Bytes nobody asked for (a server's parting 408, say): the connection is spent.
            raise _Unanswered("the server sent bytes between answers")
        waiter: "asyncio.Future[Answer]" = self._loop.create_future()
        self._waiter = waiter
        self.reusable = False
        self._transport.write(data)
        timer = self._loop.call_later(timeout, self._time_out)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    def _finish(self, answer: "_Parsed") -> None:
        assert self._waiter is not None
        # Bytes beyond the answer were never asked for: such a connection is not reused.
        self.reusable = answer.keep_alive and not self.closed and len(self._buffer) == answer.end
        self._buffer.clear()
        self._waiter.set_result(answer.answer)

    def _time_out(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TimeoutError("no answer in time"))


class _Parsed(NamedTuple):
    answer: Answer
    keep_alive: bool
    end: int  # Where the answer ends in the buffer.


def _parse(buffer: bytearray, complete: bool) -> Optional[_Parsed]:
    """The answer at the start of ``buffer``, or ``None`` if more bytes are needed.
    ``complete``: the connection has ended, which ends an answer without a length."""
    start = 0
    while True:
        head_end = buffer.find(b"\r\n\r\n", start)
        if head_end < 0:
            if len(buffer) - start > _MAX_HEAD:
                raise MalformedAnswer("the answer's head is too long")
            return None
        lines = bytes(buffer[start:head_end]).decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
            raise MalformedAnswer(f"not an HTTP/1 answer: {lines[0][:80]!r}")
        status = int(code)
        body_start = head_end + 4
        if 100 <= status < 200:
            start = body_start  # An interim answer (100 Continue); the real one follows.
            continue
        break
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise MalformedAnswer(f"a header without a colon: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    if status in (204, 304):
        body, end = b"", body_start
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunked = _dechunk(buffer, body_start)
        if chunked is None:
            return None
        body, end = chunked
    elif "content-length" in headers:
        length = headers["content-length"]
        if not (length.isascii() and length.isdigit()):
            raise MalformedAnswer(f"a bad Content-Length: {length[:80]!r}")
        end = body_start + int(length)
        if len(buffer) < end:
            return None
        body = bytes(buffer[body_start:end])
    else:
        if not complete:
            return None
        body, end, keep_alive = bytes(buffer[body_start:]), len(buffer), False
    text = body.decode("utf-8", errors="replace")
    return _Parsed(Answer(status, text, headers), keep_alive, end)


def _dechunk(buffer: bytearray, position: int) -> Optional[tuple[bytes, int]]:
    """The body of a chunked answer starting at ``position`` and where it ends, or ``None``
    if more bytes are needed."""
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size_text = bytes(buffer[position:line_end]).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise MalformedAnswer(f"a bad chunk size: {size_text[:80]!r}") from None
        position = line_end + 2
        if size == 0:
            # Trailers, if any, end with an empty line, as the head does.
            if buffer[position : position + 2] == b"\r\n":
                return bytes(body), position + 2
            trailers_end = buffer.find(b"\r\n\r\n", position)
            if trailers_end < 0:
                return None
            return bytes(body), trailers_end + 4
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        position += size + 2
