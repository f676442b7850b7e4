"""Polling connectivity-management platforms (CMP) over REST: the poller and the adapters."""
