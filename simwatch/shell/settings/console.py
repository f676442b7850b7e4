"""``[console]``: the browser console under ``/ui/`` and its per-SIM history store."""

from pydantic import Field

from simwatch.shell.settings.base import Model, OptionalPath


class ConsoleSettings(Model):
    enabled: bool = True
    # a signed-in browser session lasts this long (then the agent signs in again)
    session_ttl_s: float = Field(8 * 3600.0, ge=60.0, le=30 * 86_400.0)
    max_sessions: int = Field(1000, ge=1, le=100_000)  # the oldest is dropped beyond
    # per-SIM history (records, sessions, rejects) and per-group series kept on disk, in
    # days: older days are dropped whole (one sqlite table per day)
    history_days: int = Field(2, ge=1, le=31)
    history_file: OptionalPath = None  # default: <state_dir>/history.sqlite
    # records waiting for the history writer; beyond, new ones are dropped and counted
    history_max_pending: int = Field(200_000, ge=1000)
