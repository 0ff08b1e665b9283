"""The dirty marks the power-cut promise rests on, where timing decides (in process).

A store commits its index row without waiting for the disk; only its
folder's mark (committed with a wait, before the first file) makes the
start-up check look there after a power cut. So no folder may be left
unmarked while it holds a row that is not yet durable.
"""

from __future__ import annotations

import threading

from pacsbox import archive as archive_mod
from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import dirty, lookup
from pacsbox.db.models import Instance
from tests.helpers import write_config
from tests.synth import make_study


def test_a_store_into_a_folder_being_checkpointed_keeps_it_marked(tmp_path, monkeypatch):
    """The checkpoint forgets a quiet folder while an image of its study
    arrives: the mark must outlive the checkpoint, since that image's row
    was committed without waiting for the disk."""
    a = Archive(load(write_config(tmp_path / "box")))
    try:
        study = make_study(per_series=2)
        a.store(study[0])
        folder = lookup.instance_path(Instance.get()).parent
        loc = (str(a.cfg.archive_dir), f"{folder.parent.name}/{folder.name}")
        monkeypatch.setattr(archive_mod, "CHECKPOINT_QUIET_SECONDS", 0.0)
        real_clear = dirty.clear_dirty
        stored = threading.Event()
        senders: list[threading.Thread] = []

        def clear_dirty(folders, **kw):
            # The next image comes in between the checkpoint's choice and its DELETE.
            t = threading.Thread(target=lambda: (a.store(study[1]), stored.set()))
            t.start()
            senders.append(t)
            # A store that may run now is done in milliseconds; one that waits
            # for the checkpoint never sets the event here.
            stored.wait(1.0)
            real_clear(folders, **kw)

        monkeypatch.setattr(dirty, "clear_dirty", clear_dirty)
        a.checkpoint()
        senders[0].join(30)
        assert stored.is_set(), "the second store did not finish"
        assert loc in dirty.dirty_folders(), "folder unmarked with a row not yet durable"
    finally:
        a.close()
