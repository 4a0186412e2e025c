#!/usr/bin/env bash
# One-shot multi-lab GPU training (Keras 3 on the torch backend; no TensorFlow on the GPU box).
# Expects, relative to the repo root:
#   .whl/        keras + namex + optree wheels for the box's Python (optional if keras is installed)
#   .gpucarry/   bccd_train.npz and pbc_trainval.npz from `python -m training cells`
# Runs six trainings side by side on one GPU, each within BUDGET seconds:
#   both_a, both_b        BCCD + PBC, robust augmentation (candidates for the served model)
#   bccd_robust/basic     BCCD only, with / without the stain-camera-focus augmentation
#   pbc_robust/basic      PBC only, likewise (leave-one-lab-out: each is tested on the other lab)
# ROUND=2 trains three more both-lab candidates on bccd_train24.npz (24 copies per BCCD original).
# Writes <name>.keras (both_*), <name>.weights16.npz (the others) and logs.tgz to $OUT.
# Which candidate ships is decided afterwards on validation only (never on a test split).
set -u
OUT=${OUT:-runs/gpu}
BUDGET=${BUDGET:-420}
EXTRA=${EXTRA:-}
PY=${PY:-python3}
CACHE=${CACHE:-.gpucarry}
mkdir -p "$OUT" /tmp/runs
WHEELS=${WHEELS:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export KERAS_BACKEND=torch PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
$PY -c "import keras, torch, numpy; print('keras', keras.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)" || exit 1

run() {
  local name=$1; shift
  $PY -m training train-cells --cache "$CACHE/${CACHE_BCCD:-bccd_train.npz}" "$CACHE/pbc_trainval.npz" --out /tmp/runs/$name \
    --time-budget-s "$BUDGET" $EXTRA "$@" > /tmp/runs/$name.console.log 2>&1
  local rc=$?
  mv /tmp/runs/$name.console.log /tmp/runs/$name/ 2>/dev/null
  [ -f /tmp/runs/$name/model.keras ] && mv /tmp/runs/$name/model.keras "$OUT/$name.keras"
  [ -f /tmp/runs/$name/weights16.npz ] && mv /tmp/runs/$name/weights16.npz "$OUT/$name.weights16.npz"
  echo "== $name rc=$rc"; grep -E "phase . epoch|restored|stopping|planned|Error" /tmp/runs/$name/train.log | tail -12
  [ $rc -ne 0 ] && tail -20 /tmp/runs/$name/$name.console.log
}

if [ "${ROUND:-1}" = 1 ]; then
  run both_a --labs bccd pbc --augment robust --seed 1337 &
  run both_b --labs bccd pbc --augment robust --seed 7 --lr 5e-4 --unfreeze-from block2a &
  run bccd_robust --labs bccd --augment robust --save-weights-only &
  run bccd_basic --labs bccd --augment basic --save-weights-only &
  run pbc_robust --labs pbc --augment robust --save-weights-only &
  run pbc_basic --labs pbc --augment basic --save-weights-only &
else
  # round 2: both labs, twice as many BCCD copies per original (bccd_train24.npz)
  CACHE_BCCD=bccd_train24.npz
  run both_c --labs bccd pbc --augment robust --seed 7 --lr 5e-4 --unfreeze-from block2a &
  run both_d --labs bccd pbc --augment robust --seed 11 --lr 5e-4 --unfreeze-from block2a --label-smoothing 0.05 &
  run both_e --labs bccd pbc --augment robust --seed 13 --lr 4e-4 --unfreeze-from stem_ &
fi
wait
tar czf "$OUT/logs.tgz" -C /tmp/runs .
ls -la "$OUT"
