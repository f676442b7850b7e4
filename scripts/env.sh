# Sourced by scripts/test and scripts/simwatch: makes .venv with simwatch and its
# dev tools installed, reinstalling when pyproject.toml, setup.py or the optional C
# extension's source (simwatch/core/_cdecode.c: the install compiles it) changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
stamp="$venv/.simwatch-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] \
  || [ "$root/setup.py" -nt "$stamp" ] || [ "$root/simwatch/core/_cdecode.c" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root[dev]"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
