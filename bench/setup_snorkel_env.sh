#!/usr/bin/env bash
# Create bench/.venv-snorkel: an isolated venv holding Snorkel 0.10.0 for benchmarks only.
# Snorkel is NOT a dependency of mteach; the benches call it through a subprocess.
#
# Usage: bash bench/setup_snorkel_env.sh        (idempotent; rerun to repair)
#
# CPU torch is installed FIRST from the local wheel so that pip does not pull the
# multi-GB CUDA build as Snorkel's dependency. Old pandas/numpy/scikit-learn are
# pinned because Snorkel 0.10 uses APIs removed in pandas 2 / numpy 2.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-snorkel"
PY="${PYTHON:-python3}"
TORCH_WHL="${TORCH_WHL:-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -f "$TORCH_WHL" ]; then
    "$VENV/bin/python" -m pip install -q "$TORCH_WHL"
else
    echo "warning: $TORCH_WHL not found; installing CPU torch from the PyTorch CPU index is not possible offline," \
         "falling back to the registry's torch (large download)" >&2
fi
"$VENV/bin/python" -m pip install -q \
    "snorkel==0.10.0" \
    "numpy>=1.24,<2" \
    "pandas>=1.5,<2" \
    "scikit-learn>=1.0,<1.4" \
    "scipy>=1.7,<1.12" \
    "networkx>=2.2,<3"
"$VENV/bin/python" - <<'PY'
import numpy, pandas, torch, snorkel
from snorkel.labeling.model import LabelModel
from snorkel.labeling import PandasLFApplier, labeling_function
df = pandas.DataFrame({"x": [1, 2, 3]})
@labeling_function()
def lf(row):
    return int(row.x > 1)
L = PandasLFApplier([lf]).apply(df, progress_bar=False)
assert L.shape == (3, 1)
print(f"snorkel {snorkel.__version__}  torch {torch.__version__}  numpy {numpy.__version__}  pandas {pandas.__version__}: OK")
PY
