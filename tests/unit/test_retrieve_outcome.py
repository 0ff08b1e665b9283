"""What the end of a remote's C-MOVE means for a retrieve job (PS3.4 C.4.2.1.5): the
runner's three outcomes, each with the reason the queue page and ``--wait`` show."""

from __future__ import annotations

from pacsbox.outbound.retrieve import outcome
from pacsbox.scu.remote import MoveResult


def _of(**kw):
    got = outcome(MoveResult(**kw), "PACS2", "PACSBOX", 11112)
    return got.kind, got.message


def test_success_partial_and_empty():
    assert _of(status=0, completed=3) == ("done", "3 retrieved")
    assert _of(status=0xB000, completed=2, failed=1) == (
        "done", "2 retrieved, 1 failed (status B000): a partial retrieve")  # fmt: skip
    assert _of(status=0, completed=1, warning=1) == ("done", "2 retrieved (1 with warnings)")
    kind, why = _of(status=0)
    assert kind == "refused" and "sent nothing" in why


def test_a801_tells_the_user_what_to_fix():
    assert _of(status=0xA801) == ("refused", "PACS2 does not know PACSBOX as a move destination "
        "(A801): add PACSBOX (this box's address, port 11112) to PACS2's AE table, then retry "
        "the job")  # fmt: skip


def test_a_remote_out_of_resources_or_gone_is_tried_again():
    assert _of(status=0xA702, completed=1, remaining=4)[0] == "unreachable"
    kind, why = _of(status=None, completed=2, remaining=3)
    assert kind == "unreachable" and why == "PACS2 went away after 2 retrieved"


def test_other_failures_fail_with_the_remote_s_status_and_comment():
    assert _of(status=0xC000, comment="no such study") == (
        "refused", "PACS2 answered the C-MOVE with 0 retrieved (status C000): no such study")  # fmt: skip
