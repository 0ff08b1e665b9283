"""HTTP Basic on every request: the password is checked once, then trusted until anything changes."""

from __future__ import annotations

import base64

import pytest
import webtest

from pacsbox.web import auth, users
from tests.integration.web.conftest import PASSWORD

NEW_PASSWORD = "another password 2"


def basic(password: str = PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"tool:{password}".encode()).decode()}


@pytest.fixture
def checks(monkeypatch):
    """How many times a password was really verified (scrypt)."""
    calls = []
    real = auth.verify_password

    def counted(password, stored):
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(auth, "verify_password", counted)
    return calls


def status(web, password: str = PASSWORD) -> int:
    return web.get("/dicom-web/studies", headers=basic(password), expect_errors=True).status_int


def test_verified_once_then_trusted(app, clock, checks):
    users.add_user("tool", ["view"], PASSWORD)
    web = webtest.TestApp(app)
    assert [status(web) for _ in range(3)] == [200, 200, 200]
    assert len(checks) == 1
    assert status(web, "wrong password 9") == 401  # a wrong one is always verified
    assert len(checks) == 2
    clock.advance(auth.BASIC_TRUST_SECONDS + 1)
    assert status(web) == 200 and len(checks) == 3  # trust runs out: verified again


def test_a_new_password_or_a_disabled_account_ends_the_trust(app, checks):
    users.add_user("tool", ["view"], PASSWORD)
    web = webtest.TestApp(app)
    assert status(web) == 200
    users.set_password("tool", NEW_PASSWORD)
    assert status(web) == 401  # the old password no longer opens anything
    assert status(web, NEW_PASSWORD) == 200
    users.update_user("tool", disabled=True)
    assert status(web, NEW_PASSWORD) == 401
