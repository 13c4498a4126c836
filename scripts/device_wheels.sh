#!/usr/bin/env bash
# Wheels that an accelerator machine without network lacks (ml_collections, grain, array_record,
# tensorboardX, portpicker, and TFDS with its pure-Python dependencies), for CPython 3.12 on
# x86-64 Linux, into .whl/ or the folder given as the argument (ignore it: `echo /.whl/ >> .git/info/exclude`). On the machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl}
mkdir -p "$dest"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$dest" ml_collections grain array_record tensorboardX portpicker tensorflow-datasets dm-tree immutabledict \
    simple_parsing tensorflow-metadata termcolor toml docstring-parser googleapis-common-protos
# promise is published as a source distribution only: build its (pure-Python) wheel here.
python3 -m pip wheel -q --no-deps -w "$dest" promise
ls "$dest"
