"""INT-3: every link the README's "Links for a HIS/RIS" table gives opens, for a stored study."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest
import webtest

from pacsbox.db.models import Study
from tests.integration.web.conftest import login, store

README = Path(__file__).resolve().parents[3] / "README.md"


def documented_links() -> list[str]:
    text = README.read_text()
    section = text.split("## Links for a HIS/RIS", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(/[^`]+)` \|", section, flags=re.M)


def test_the_table_lists_the_links():
    links = documented_links()
    assert len(links) >= 7 and any(link.startswith("/viewer/") for link in links)


@pytest.mark.parametrize("link", documented_links())
def test_a_documented_link_opens(app, archive, link):
    res = store(archive)
    Study.update(private=False).execute()
    url = link.format(
        study=res.study_instance_uid, series=res.series_instance_uid, image=res.sop_instance_uid
    )
    anonymous = webtest.TestApp(app).get(url, expect_errors=True)
    if anonymous.status_int in (301, 302, 303):  # a browser: to the login, and back
        where = urllib.parse.urlsplit(anonymous.headers["Location"])
        assert where.path == "/login" and urllib.parse.parse_qs(where.query)["next"] == [url]
    else:  # a tool's URL: it asks for credentials
        assert anonymous.status_int == 401, (url, anonymous.status_int)
    page = login(app, "clinician", ["view"])
    answer = page.get(url, expect_errors=True)
    # The viewer may not be installed here: then its link says so (503), nothing else.
    ok = (200, 503) if link.startswith("/viewer/") else (200,)
    assert answer.status_int in ok, (url, answer.status_int)
