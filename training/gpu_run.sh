#!/usr/bin/env bash
# One-shot GPU training used for the shipped model (Keras 3 on the torch backend, no
# TensorFlow on the GPU box). Expects, relative to the repo root:
#   .whl/       keras + namex + optree wheels for the box's Python (optional if keras is installed)
#   .gpucarry/train_cache.npz   from `python -m training cache --data .../TRAIN --out ...`
#   training/pretrained/efficientnet_lite0_imagenet.npz   from `python -m training convert`
# Trains the candidate configurations in parallel, each with a wall-clock budget, and
# writes <name>.keras + <name>.logs.tgz to $OUT (or ./runs/gpu when OUT is unset).
# The candidate with the lowest *validation* loss is picked afterwards (never on TEST).
set -u
OUT=${OUT:-runs/gpu}
BUDGET=${BUDGET:-390}
EPOCHS=${EPOCHS:-30}
EXTRA=${EXTRA:-}
PY=${PY:-python3}
mkdir -p "$OUT" /tmp/runs
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export KERAS_BACKEND=torch PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
$PY -c "import keras, torch, numpy; print('keras', keras.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)" || exit 1

run() {
  local name=$1; shift
  OMP_NUM_THREADS=4 $PY -m training train --cache "${CACHE:-.gpucarry/train_cache.npz}" --out /tmp/runs/$name \
    --epochs "$EPOCHS" --batch-size 64 --verbose 2 --time-budget-s "$BUDGET" $EXTRA "$@" \
    > /tmp/runs/$name.console.log 2>&1
  local rc=$?
  mv /tmp/runs/$name.console.log /tmp/runs/$name/ 2>/dev/null
  [ -f /tmp/runs/$name/model.keras ] && cp /tmp/runs/$name/model.keras "$OUT/$name.keras"
  tar czf "$OUT/$name.logs.tgz" -C /tmp/runs --exclude model.keras "$name"
  echo "== $name rc=$rc"; grep -E "phase . epoch|restored|stopping|planned" /tmp/runs/$name/train.log | tail -40
}

run A --unfreeze-from block3a --lr 3e-4 --patience 6 --head-epochs 2 &
run B --unfreeze-from stem_ --lr 3e-4 --patience 6 --head-epochs 2 --label-smoothing 0.1 &
run C --unfreeze-from stem_ --lr 2e-4 --patience 6 --head-epochs 2 &
wait
ls -la "$OUT"
