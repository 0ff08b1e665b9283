"""multipart/related (RFC 2387) both ways: parts streamed out, and a request read part by part.

A retrieve writes each stored file as one part while the client reads, and
STOW-RS reads its body from the socket as it comes (a Content-Length body or
a chunked one) and hands over each part once its closing delimiter arrived,
so a request is never held whole: only the part being read is.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pacsbox.errors import PacsboxError, UsageError

READ_SIZE = 256 * 1024


class TooLarge(PacsboxError):
    """The request body is over the configured limit."""

    http_status = 413


class Malformed(UsageError):
    """Not a well-formed multipart body (HTTP 400)."""


def new_boundary() -> str:
    return "pacsbox-" + secrets.token_hex(16)


def content_type(boundary: str, part_type: str) -> str:
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def write_parts(boundary: str, parts: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """The body of a multipart answer, one part (headers, then bytes) at a time."""
    marker = f"--{boundary}\r\n".encode()
    for ctype, data in parts:
        yield marker + f"Content-Type: {ctype}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        yield data
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """``type/sub; a=b; c="d"`` as ("type/sub", {"a": "b", "c": "d"})."""
    head, *rest = value.split(";")
    params = {}
    for p in rest:
        k, _, v = p.partition("=")
        params[k.strip().lower()] = v.strip().strip('"')
    return head.strip().lower(), params


def body_chunks(stream: BinaryIO, length: int | None, chunked: bool, limit: int) -> Iterator[bytes]:
    """The request body as it arrives; raises TooLarge past ``limit`` bytes, Malformed
    for a broken chunked encoding."""
    if length is not None and length > limit:
        raise TooLarge(f"the request is {length} bytes; at most {limit} are accepted")
    total = 0
    if not chunked:
        remaining = length or 0
        while remaining > 0:
            data = stream.read(min(READ_SIZE, remaining))
            if not data:
                raise Malformed("the request body ended before its Content-Length")
            remaining -= len(data)
            yield data
        return
    while True:
        line = stream.readline(1024)
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise Malformed("a broken chunked request body") from None
        if size == 0:
            while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        total += size
        if total > limit:
            raise TooLarge(f"the request is over {limit} bytes, the most accepted")
        left = size
        while left:
            data = stream.read(min(READ_SIZE, left))
            if not data:
                raise Malformed("the chunked request body ended early")
            left -= len(data)
            yield data
        stream.readline(16)  # the CRLF after the chunk


@dataclass
class Part:
    headers: dict[str, str]
    data: bytes

    @property
    def content_type(self) -> str:
        return header_params(self.headers.get("content-type", "text/plain"))[0]


def read_parts(chunks: Iterable[bytes], boundary: str) -> Iterator[Part]:
    """Each part of a multipart body once complete; raises Malformed when the body
    has no opening delimiter or ends before its closing one."""
    if not boundary or len(boundary) > 200:
        raise Malformed("the Content-Type has no usable boundary parameter")
    opening = b"--" + boundary.encode("latin-1")
    delim = b"\r\n" + opening
    buf = bytearray()
    it = iter(chunks)
    started = False
    scan = 0  # where the next search starts: the bytes before cannot begin a delimiter
    for chunk in it:
        buf += chunk
        if not started:
            at = buf.find(opening)
            if at < 0:
                if len(buf) > 64 * 1024:
                    raise Malformed("no multipart delimiter at the start of the body")
                continue
            if at > 0 and not buf[:at].endswith(b"\r\n") and buf[:at].strip():
                raise Malformed("text before the first multipart delimiter")
            del buf[: at + len(opening)]
            started = True
        while True:
            end = buf.find(delim, scan)
            if end < 0:
                scan = max(0, len(buf) - len(delim) + 1)  # a delimiter may straddle chunks
                break
            yield _part(bytes(buf[:end]))
            del buf[: end + len(delim)]
            scan = 0
            if buf[:2] == b"--":
                return  # the closing delimiter; an epilogue is ignored
    if not started:
        raise Malformed("no multipart delimiter in the body")
    if buf[:2] == b"--":
        return
    raise Malformed("the multipart body ends before its closing delimiter")


def _part(raw: bytes) -> Part:
    # After a delimiter: optional whitespace, CRLF, headers, CRLF CRLF, the data.
    line_end = raw.find(b"\r\n")
    if line_end < 0 or raw[:line_end].strip():
        raise Malformed("a multipart delimiter is not followed by a line break")
    rest = raw[line_end + 2 :]
    if rest.startswith(b"\r\n"):
        return Part({}, rest[2:])
    head_end = rest.find(b"\r\n\r\n")
    if head_end < 0:
        raise Malformed("a part's headers do not end")
    headers = {}
    for line in rest[:head_end].decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            raise Malformed(f"a part header without a colon: {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    return Part(headers, rest[head_end + 4 :])
