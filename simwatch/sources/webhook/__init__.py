"""The webhook source: records pushed to ``POST /api/v1/ingest/{name}`` (``source``), and
the pushed formats (``formats``; the platforms' own in ``kore``, ``cisco``)."""

from simwatch.sources.webhook.source import WebhookSource, journal_dir

__all__ = ["WebhookSource", "journal_dir"]
