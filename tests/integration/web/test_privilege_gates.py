"""Each of the 14 privileges gates something, or the users page says it gates
nothing yet: a feature that lands without its privilege's gate fails here."""

from __future__ import annotations

import re

import pytest

from pacsbox.db.models import Patient, Study
from pacsbox.web import privileges as pv
from tests.integration.web.conftest import login, store
from tests.integration.web.test_privileges import _fill

# What a route of each not-yet feature would be called; such a route must name
# the privilege (and then the privilege leaves NO_FEATURE_YET).
FEATURE_WORDS = {
    "forward": ("forward", "routing"),
    "query": ("query", "remote"),
    "move": ("retrieve", "move"),
    "print": ("print", "film"),
    "upload": ("note", "attach"),
    "storage": ("storage", "relocate"),
}


def _labels_marked(html: str) -> dict[str, bool]:
    """Privilege checkbox label -> marked "no feature yet", in the add-user form."""
    form = html[html.index('<form method="post" action="/users" class="card">') :]
    out = {}
    for inner in re.findall(r'<label title="[^"]*">(.*?)</label>', form, re.S):
        m = re.search(r'name="priv_(\w+)"', inner)
        if m:
            out[m.group(1)] = "no feature yet" in inner
    return out


def test_the_users_page_marks_what_gates_nothing_yet(app):
    root = login(app, "root")
    marked = _labels_marked(root.get("/users").text)
    assert set(marked) == set(pv.KEYS)  # all still assignable
    assert {k for k, m in marked.items() if m} == set(pv.NO_FEATURE_YET)
    data = root.get("/users.json").json
    assert sorted(data["no_feature_yet"]) == sorted(pv.NO_FEATURE_YET)
    # Assigning one works and is kept, so a later feature needs no migration.
    r = root.post("/users.json", {"name": "clerk", "priv_print": "1", "priv_view": "1"})
    assert r.status_int == 200
    (clerk,) = [u for u in root.get("/users.json").json["users"] if u["name"] == "clerk"]
    assert clerk["privileges"] == ["view", "print"]


@pytest.mark.parametrize("key", pv.KEYS)
def test_each_privilege_gates_a_route_or_is_marked(app, archive, key):
    res = store(archive)
    Study.update(private=False).execute()
    Patient.update(private=False).execute()
    pk = Patient.select().first().id
    ctx = app.config["pacsbox.ctx"]
    gated = [s for s in ctx.routes if s.privilege == key]
    if key in pv.NO_FEATURE_YET:
        assert gated == [], f"{key} gates {gated}: take it out of NO_FEATURE_YET"
        words = FEATURE_WORDS[key]
        named = [s.path for s in ctx.routes if any(w in s.path for w in words)]
        assert named == [], f"{named} look like the {key} feature: gate them with it"
        return
    without = login(app, "without", [k for k in pv.KEYS if k != key])
    holder = login(app, "holder", [key])
    if key == "view":
        # On the page, View gates private patients and studies (the seed); it also
        # gates every DICOMweb route (issue 19), which test_dicomweb_auth walks.
        assert gated and all(s.path.startswith("/dicom-web/") for s in gated)
        Study.update(private=True).execute()
        url = f"/studies/{res.study_instance_uid}.json"
        assert without.get(url, expect_errors=True).status_int == 404
        assert holder.get(url).status_int == 200
        return
    assert gated, f"{key} gates no route: mark it in NO_FEATURE_YET"
    for spec in gated:
        url = _fill(spec.path, res, pk)
        if spec.method == "GET":
            refused = without.get(url, expect_errors=True)
            let_in = holder.get(url, expect_errors=True)
        else:
            refused = without.post(url, {"read": "yes"}, expect_errors=True)
            let_in = holder.post(url, {"read": "yes"}, expect_errors=True)
        assert refused.status_int == 403, (key, spec.path)
        assert let_in.status_int != 403, (key, spec.path)


def test_query_gates_the_remote_search_and_move_its_retrieve(app):
    """The seed's Query and Move: searching a remote AE, and retrieving from it."""
    ctx = app.config["pacsbox.ctx"]
    gates = {(s.method, s.path): s.privilege for s in ctx.routes}
    assert gates[("GET", "/remote")] == "query"
    assert gates[("POST", "/remote/retrieve")] == "move"
    assert not {"query", "move"} & pv.NO_FEATURE_YET
