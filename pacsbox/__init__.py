"""pacsbox: a DICOM 3.0 archive appliance for clinics (PACS in one box)."""

__version__ = "0.1.0"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1395.1"
IMPLEMENTATION_VERSION_NAME = "PACSBOX_010"
