#!/usr/bin/env bash
# Install LeRobot into the active venv for tests/test_lerobot_compat.py (CPU only, PyPI only).
#
#   lerobot 0.3.3  the last release of the v2.1 format: its LeRobotDataset is the reader
#                  users load our datasets with. Into the venv's site-packages.
#   lerobot 0.4.4  its v2.1 -> v3.0 converter. Into <venv>/lerobot-v30 with its own
#                  datasets 4.x (0.3.3 needs datasets<=3.6), used by a child process.
#
# Both go in with --no-deps: their declared requirements (torch<2.8, torchcodec, wandb,
# rerun, gymnasium, ...) would pull GBs of CUDA and nothing the dataset code imports.
# torch==2.13.0 is the CPU build this machine keeps on disk (pip's find-links); any
# other torch requirement would fetch CUDA builds. torchvision 0.22.1 is the newest that
# lerobot 0.3.3 allows (<0.23) and has torchvision.io.VideoReader (gone in 0.24), which
# LeRobot's "pyav" video backend uses; its compiled ops can't load on CPU torch (see
# tests/lerobot_env.py). Usage, in the project venv:
#     bash scripts/install_lerobot_for_tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else "install_lerobot_for_tests.sh: activate the project venv first")'
PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check)
V30_DIR=$("$PYTHON" -c 'import sys; print(sys.prefix)')/lerobot-v30
start=$SECONDS

"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" --no-deps "lerobot==0.3.3" "torchvision==0.22.1"
"${PIP[@]}" "datasets==3.6.0" "huggingface_hub==0.35.3" "pandas==3.1.1" "jsonlines==4.0.0" "einops==0.8.2" \
    "pillow==13.0.0"

rm -rf "$V30_DIR"
"${PIP[@]}" --no-deps --target "$V30_DIR" "lerobot==0.4.4" "datasets==4.0.0" "accelerate==1.12.0" \
    "safetensors==0.8.0"

# Both LeRobots must import (fails loudly otherwise).
"$PYTHON" tests/lerobot_env.py
echo "install_lerobot_for_tests.sh: done in $((SECONDS - start)) s"
