#!/usr/bin/env bash
# Create (or reuse) the virtual environment at .venv/ and install moclip into it, editable, with dev tools.
# Idempotent: a second run with unchanged pyproject.toml and this script does nothing.
# Prints a few progress lines; pip's own output goes to .venv/install.log and is shown only if a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
STAMP=.venv/.moclip-setup
LOG=.venv/install.log
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

step() {  # step "what" command...: one line of progress, the command's output into the log
  local what="$1" start=$SECONDS
  shift
  printf 'moclip setup: %s ... ' "$what"
  echo "### $what: $*" >> "$LOG"
  if "$@" >> "$LOG" 2>&1; then
    echo "done ($((SECONDS - start)) s)"
  else
    echo "FAILED"
    echo "---- last 40 lines of $LOG ----" >&2
    tail -n 40 "$LOG" >&2
    echo "---- the whole log: $LOG ----" >&2
    exit 1
  fi
}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv || { echo "moclip setup: '$PYTHON -m venv .venv' failed (Python >= 3.10 with venv needed)" >&2; exit 1; }
fi
: > "$LOG"
step "upgrading pip" .venv/bin/python -m pip install -q --upgrade pip

# open_clip needs torchvision, and torch/torchvision must be a matching pair. These pairs are known to import:
#   x86_64:  torch 2.14.1 + torchvision 0.29.1 (CUDA build, ~6 GB; runs on the CPU too)
#   aarch64: torch 2.9.1 + torchvision 0.24.1 (CPU build)
# (torch 2.13.0's CPU wheel with PyPI's torchvision fails: "operator torchvision::nms does not exist".)
# Set MOCLIP_TORCH to override, e.g. MOCLIP_TORCH="torch==2.9.1 torchvision==0.24.1".
case "$(uname -m)" in
  x86_64) default_torch="torch==2.14.1 torchvision==0.29.1" ;;
  aarch64|arm64) default_torch="torch==2.9.1 torchvision==0.24.1" ;;
  *) default_torch="torch torchvision" ;;
esac
# shellcheck disable=SC2086
step "installing ${MOCLIP_TORCH:-$default_torch} (several GB, a few minutes)" \
  .venv/bin/python -m pip install -q ${MOCLIP_TORCH:-$default_torch}
step "installing moclip and its dependencies" .venv/bin/python -m pip install -q -e ".[dev]"
echo "$want" > "$STAMP"
echo "moclip installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')); pip log: $LOG"
