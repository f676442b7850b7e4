"""MQTT connection pieces shared by the MQTT source and the MQTT sink."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simwatch.shell.settings import MqttConnectionSettings


def tls_context(settings: MqttConnectionSettings) -> ssl.SSLContext:
    """A client TLS context from the configured files (blocking: call via to_thread)."""
    context = ssl.create_default_context(
        cafile=str(settings.ca_file) if settings.ca_file is not None else None
    )
    if settings.cert_file is not None:
        context.load_cert_chain(
            str(settings.cert_file),
            str(settings.key_file) if settings.key_file is not None else None,
        )
    return context
