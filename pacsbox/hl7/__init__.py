"""HL7 v2 over MLLP (INT-1): orders into the worklist, ADT patient updates into the files.

The only room that imports the ``hl7`` library (parser and asyncio MLLP
transport): ``listener`` frames, ``process`` decides and journals, ``orders``
and ``patients`` carry a message out through ``db.worklist`` and ``edit``,
``messages`` maps the fields and ``ack`` answers.
"""
