"""stackfleet: container clusters on Apache CloudStack from one spec."""

__version__ = "0.1.0"
