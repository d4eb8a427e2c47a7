"""remediator: an auto-remediation rules engine for NATS alerts."""

__version__ = "0.1.0"
