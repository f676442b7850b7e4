"""The daemon's configuration: one pydantic model tree, from TOML plus ``SIMWATCH_`` env.

Every option has a default, so ``simwatch run`` works with no file at all (the built-in
simulator source on loopback). Secrets are ``SecretStr`` (never printed) and can come
from a file (``*_file``) or the environment. Unknown keys are errors: a typo must fail
at start with the field's name, not be silently ignored.

The root model ``Settings`` is a pydantic-settings ``BaseSettings``; ``load_settings``
gives it two sources, the TOML file (``TomlConfigSettingsSource``) and the ``SIMWATCH_``
environment over it (``EnvSettingsSource``, ``__`` between levels), validates the tree,
then does the file-system checks (secret files read, TLS/inventory/token files present).
Every problem becomes a ``ConfigError`` whose message names the field by its dotted path,
e.g. ``http.port: Input should be less than or equal to 65535 (got 70000)``.

Modules, by job: ``base`` (the error, the base model, shared types), ``engine``, ``http``,
``mqtt``, ``secrets``, ``sources``, ``sinks`` (the sections), ``root`` (``Settings``),
``env`` (the environment source and its adapter), ``loading`` (``load_settings`` and its
messages), ``check`` (``simwatch check-config``).
"""

from simwatch.shell.settings.base import (
    ConfigError,
    HttpUrl,
    OptionalPath,
    OptionalSecret,
    OptionalStr,
    OptionalUrl,
    is_loopback,
)
from simwatch.shell.settings.check import check_config_main, summary
from simwatch.shell.settings.console import ConsoleSettings
from simwatch.shell.settings.engine import (
    CheckpointSettings,
    EngineSettings,
    LogSettings,
    MetricsSettings,
)
from simwatch.shell.settings.http import HttpSettings, read_tokens
from simwatch.shell.settings.loading import load_settings
from simwatch.shell.settings.maintenance import MaintenanceSettings, config_windows
from simwatch.shell.settings.mqtt import MqttConnectionSettings
from simwatch.shell.settings.root import ENV_NESTING, ENV_PREFIX, Settings, api_token_file
from simwatch.shell.settings.secrets import TokenSettings
from simwatch.shell.settings.sinks import (
    AlertmanagerSinkSettings,
    InfluxSinkSettings,
    MqttSinkSettings,
    SinksSettings,
)
from simwatch.shell.settings.sources import (
    FileSourceSettings,
    HttpSourceSettings,
    MqttSourceSettings,
    SimulatorSourceSettings,
    SourcesSettings,
)

__all__ = [
    "ENV_NESTING",
    "ENV_PREFIX",
    "AlertmanagerSinkSettings",
    "CheckpointSettings",
    "ConfigError",
    "ConsoleSettings",
    "EngineSettings",
    "FileSourceSettings",
    "HttpSettings",
    "HttpSourceSettings",
    "HttpUrl",
    "InfluxSinkSettings",
    "LogSettings",
    "MaintenanceSettings",
    "MetricsSettings",
    "MqttConnectionSettings",
    "MqttSinkSettings",
    "MqttSourceSettings",
    "OptionalPath",
    "OptionalSecret",
    "OptionalStr",
    "OptionalUrl",
    "Settings",
    "SimulatorSourceSettings",
    "SinksSettings",
    "SourcesSettings",
    "TokenSettings",
    "api_token_file",
    "check_config_main",
    "config_windows",
    "is_loopback",
    "load_settings",
    "read_tokens",
    "summary",
]
