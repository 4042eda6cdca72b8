#!/usr/bin/env bash
# The device suite (benchmarks/device_suite.py) from the repository root: one GPU, about 10 minutes.
#   bash benchmarks/device_suite.sh --out=device_suite.json --data_dir=/path/to/mnist [--tiny]
# PYTHON picks the interpreter (default: .venv/bin/python when present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
default_python=python3
[ -x .venv/bin/python ] && default_python=.venv/bin/python
exec "${PYTHON:-$default_python}" -m benchmarks.device_suite "$@"
