"""simwatch: watches a fleet of IoT SIM cards and localizes what the silent ones share."""

__version__ = "0.1.0"
