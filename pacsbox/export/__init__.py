"""Export to DICOM File-sets and burning to CD/DVD (MEDIA-4, MEDIA-5).

``export_fileset`` makes one File-set (DICOMDIR + DICOM/...) per volume,
``build_iso`` turns a volume into an ISO 9660 level-1 image, ``burn`` writes an
image to a burner and verifies it by reading it back, and ``burn_path`` is
``pacsbox burn DIR|ISO``. Only the lower layers (config, errors) are imported.
"""

from pacsbox.export.burn import BurnResult, burn, burn_path, verify_disc, write_image
from pacsbox.export.fileset import Volume, export_fileset
from pacsbox.export.iso import build_iso

__all__ = [
    "BurnResult",
    "Volume",
    "build_iso",
    "burn",
    "burn_path",
    "export_fileset",
    "verify_disc",
    "write_image",
]
