"""Media import (MEDIA-1..3, BOX-3): folders, discs, USB sticks, ZIPs, the watch folder.

``importer.run_import`` is the one entry point; ``sources`` finds the files a
medium offers (DICOMDIR File-set Reader or a scan), ``safety`` keeps hostile
media harmless, ``watchfolder`` and ``autoimport`` call the importer for
dropped files and inserted media. Every file goes through ``Archive.store``.
"""
