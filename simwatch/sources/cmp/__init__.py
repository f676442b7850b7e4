"""Polling connectivity-management platforms (CMP) over REST.

``source``: the poller (HTTP, cursor, rate limits, backoff, per-SIM fan-out) and
``POLLS``, which picks the platform's polling routine. ``context``: the poller as the
routines see it (``PollContext``), the poll errors and the per-SIM cursor. The polling
routines, one module per platform: ``generic_poll``, ``emnify_poll``, ``onence_poll``
(1NCE), ``cisco_poll``, ``kore_poll``, ``soracom_poll``, ``hologram_poll``. The adapters,
pure mappings of each platform's JSON to FORMATS.md records, one module per platform:
``generic``, ``emnify`` (also 1NCE's event feed), ``onence`` (1NCE), ``cisco`` (IoT
Control Center), ``kore``, ``soracom``, ``hologram``; ``base`` holds what they share
(``AdapterError``, units, time normalisation, field helpers); ``auth`` the credentials.
"""
