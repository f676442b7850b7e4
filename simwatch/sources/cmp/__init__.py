"""Polling connectivity-management platforms (CMP) over REST.

``source``: the poller (HTTP, cursor, rate limits, backoff) and ``POLLS``, the polling
routine of each platform. The adapters, pure mappings of each platform's JSON to
FORMATS.md records, one module per platform: ``generic``, ``emnify`` (also 1NCE's event
feed), ``onence`` (1NCE usage), ``cisco`` (IoT Control Center); ``base`` holds what
they share (``AdapterError``, units, time normalisation, field helpers).
"""
