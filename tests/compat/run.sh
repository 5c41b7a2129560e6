#!/usr/bin/env bash
# The test suite against one Keras/TensorFlow pair, in a fresh virtual environment (outside
# the default CI, which runs the newest pair). README.md, "Supported versions", records the
# pairs that passed.
#
#   bash tests/compat/run.sh KERAS_VERSION TENSORFLOW_VERSION [pytest arguments]
#   bash tests/compat/run.sh 3.10.0 2.19.0 -q -n 2 --dist loadfile
#
# The [dev] extra pins keras-hub to the release that goes with the newest Keras; here pip
# picks the keras-hub (and its tensorflow-text, which pins one TensorFlow release) that
# installs beside the pair asked for.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 KERAS_VERSION TENSORFLOW_VERSION [pytest arguments]" >&2; exit 2; }
keras_version=$1 tf_version=$2
shift 2
cd "$(dirname "$0")/../.."

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
python3 -m venv "$workdir/venv"
# shellcheck disable=SC1091
. "$workdir/venv/bin/activate"
pip install -q -e . "keras==$keras_version" "tensorflow==$tf_version" keras-hub \
    pytest pytest-xdist hypothesis jax torch==2.13.0 pyyaml pandas
pip install -q --no-deps mup==1.0.0
# TensorBoard before 2.21 imports pkg_resources, which setuptools 81 dropped (and torch
# pulls the newest setuptools).
python -c "import tensorboard, sys; sys.exit(tensorboard.__version__ < '2.21')" ||
    pip install -q "setuptools<81"
python -c "import keras, keras_hub, tensorflow as tf; print('keras', keras.__version__,
    'tensorflow', tf.__version__, 'keras-hub', keras_hub.__version__)"
python -m pytest "$@"
