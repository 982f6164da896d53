"""All hardware I/O, behind small interfaces, on one injectable root (see ``_sysfs``)."""
