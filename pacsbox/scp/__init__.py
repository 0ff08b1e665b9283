"""DICOM services the box offers (SCP): the listener and one module per service."""
