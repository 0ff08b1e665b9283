"""The multipart reader STOW-RS streams through: delimiters across chunk edges, chunked
bodies, the size limit, and the malformed bodies it must refuse."""

from __future__ import annotations

import io

import pytest

from pacsbox.web.dicomweb.multipart import (
    Malformed,
    TooLarge,
    body_chunks,
    read_parts,
    write_parts,
)


def _body(*parts: bytes, boundary: str = "b0und") -> bytes:
    return b"".join(write_parts(boundary, [("application/dicom", p) for p in parts]))


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_parts_survive_any_chunking(size):
    parts = [b"A" * 100, b"\r\n--b0un not a delimiter \r\n", b""]
    body = _body(*parts)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    got = list(read_parts(chunks, "b0und"))
    assert [p.data for p in got] == parts
    assert {p.content_type for p in got} == {"application/dicom"}


def test_chunked_transfer_encoding_is_decoded():
    payload = _body(b"x" * 5000)
    wire = b""
    for i in range(0, len(payload), 1000):
        piece = payload[i : i + 1000]
        wire += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    wire += b"0\r\n\r\n"
    chunks = body_chunks(io.BytesIO(wire), None, True, 10**6)
    (part,) = read_parts(chunks, "b0und")
    assert part.data == b"x" * 5000


def test_size_limits():
    with pytest.raises(TooLarge):
        list(body_chunks(io.BytesIO(b""), 2 * 1024**3, False, 1024**3))
    wire = b"800\r\n" + b"y" * 0x800 + b"\r\n0\r\n\r\n"
    with pytest.raises(TooLarge):
        list(body_chunks(io.BytesIO(wire), None, True, 1000))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"no delimiter anywhere",
        b"--b0und\r\nContent-Type: application/dicom\r\n\r\ncut short",
        b"--b0und\r\nno header end",
        b"--b0und\r\nbroken header line\r\n\r\ndata\r\n--b0und--",
    ],
)
def test_malformed_bodies_are_refused(body):
    with pytest.raises(Malformed):
        list(read_parts([body], "b0und"))


def test_a_short_content_length_body_is_malformed():
    with pytest.raises(Malformed):
        list(body_chunks(io.BytesIO(b"abc"), 10, False, 100))
