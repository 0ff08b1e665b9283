"""The local web page (WEB-1..WEB-6): bottle, server-side sessions, privileges, WADO-URI."""

from __future__ import annotations


def create_app(cfg, archive, **kw):  # noqa: ANN001, ANN201 - thin re-export, see app.create_app
    from pacsbox.web.app import create_app as _create

    return _create(cfg, archive, **kw)
