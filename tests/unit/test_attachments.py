"""Attachment checks that need no archive: the type by content, the display name."""

from __future__ import annotations

import pytest

from pacsbox.attachments import MAX_NAME, display_name, sniff


@pytest.mark.parametrize(
    "head, kind",
    [
        (b"%PDF-1.7\n", "pdf"),
        (b"\x89PNG\r\n\x1a\n\0\0", "png"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "jpeg"),
        (b"\x7fELF\x02\x01", None),
        (b"MZ\x90\0", None),
        (b" %PDF-1.7", None),  # the magic must be at the start
        (b"", None),
    ],
)
def test_the_type_comes_from_the_first_bytes(head, kind):
    found = sniff(head)
    assert (found[0] if found else None) == kind


@pytest.mark.parametrize(
    "raw, ext, shown",
    [
        ("../../etc/passwd", ".pdf", "passwd.pdf"),
        ("C:\\Users\\x\\scan.JPG", ".jpg", "scan.jpg"),
        ("a\x00b\x1b[31m.pdf", ".pdf", "ab[31m.pdf"),
        ("report.exe", ".pdf", "report.pdf"),  # the extension is the content's
        ("...", ".png", "attachment.png"),
        ("", ".pdf", "attachment.pdf"),
        ("\u202egpj.exe", ".pdf", "gpj.pdf"),  # no right-to-left override
    ],
)
def test_display_names_are_harmless(raw, ext, shown):
    assert display_name(raw, ext) == shown


def test_long_names_are_cut():
    name = display_name("é" * 10_000 + ".pdf", ".pdf")
    assert len(name) == MAX_NAME and name.endswith(".pdf")
