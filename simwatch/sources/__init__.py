"""Record sources of the daemon: each turns an outside feed into ``Batch``es."""
