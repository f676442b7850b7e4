"""The functional core: pure analysis over the fleet state.

stdlib and numpy only; no I/O beyond the packaged reference tables, no clock (time is
an argument), no global state. Nothing here imports the shell.
"""
