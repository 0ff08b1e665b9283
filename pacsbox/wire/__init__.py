"""Everything pacsbox does below pynetdicom's public API, in one room.

``compat.check()`` looks at every private name used here once at start-up;
when anything differs, every fast path here stands down and pynetdicom's own
code carries every message. ``scp/`` and ``scu/`` call the small surface:
``listen`` (serve, shutdown, connection_opened), ``receive.attach``,
``send`` (raw_writer, settle, busy, nodelay), ``find.pending_sender``,
``retrieve`` (install, respond). wire knows nothing of the archive or the
index: callers hand it callbacks.
"""
