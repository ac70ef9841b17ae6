#!/usr/bin/env bash
# The one GPU check (bench/gpu_check.py: its docstring says what it measures), on a bare GPU machine with this repo:
#   bash bench/gpu_check.sh [--out DIR] [--quick] [--device cpu] [--decode-workers N] ...
# Python: .venv/bin/python if there is one; else python3 if it imports torch, open_clip, av and moclip; else
# `make setup` builds .venv (it needs the package registry) and that is used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
elif command -v python3 >/dev/null && python3 -c "import torch, open_clip, av, moclip" 2>/dev/null; then
    PY=python3
else
    echo "gpu_check.sh: no .venv, and python3 lacks torch / open_clip / av / moclip: running make setup" >&2
    make setup
    PY=.venv/bin/python
fi
echo "gpu_check.sh: using $PY ($("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])'))"
exec "$PY" bench/gpu_check.py "$@"
