"""Disk watermarks (DATA-4): the monitor that purges the oldest studies past the
high-water mark (``monitor``), what a purge did (``report``) and ``pacsbox
purge`` (``command``). The only room that measures disks with psutil."""
