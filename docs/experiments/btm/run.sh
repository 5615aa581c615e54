#!/usr/bin/env bash
# The Branch-Train-Merge experiment of docs/experiments/btm.md: three books of ../shared/data/english-prose
# as domains. Usage: bash docs/experiments/btm/run.sh WORKDIR (writes WORKDIR/{data,btm,*.json}).
set -euo pipefail
W=${1:?work directory}
L="nice -n 15 lmlab"
mkdir -p "$W/data/train" "$W/data/dev" "$W/data/test"
python3 - "$W/data" "${LMLAB_PROSE:-../shared/data/english-prose}" <<'PY'
import sys
from pathlib import Path
out, src = Path(sys.argv[1]), Path(sys.argv[2])
for name, f in [("frank", "frankenstein.txt"), ("jekyll", "jekyll_and_hyde.txt"), ("tom", "tom_sawyer.txt")]:
    t = (src / f).read_text(encoding="utf-8")
    a, b = int(len(t) * 0.9), int(len(t) * 0.92)   # 90% train, 2% dev (priors, merge weights), 8% test
    (out / "train" / f"{name}.txt").write_text(t[:a], encoding="utf-8")
    (out / "dev" / f"{name}.txt").write_text(t[a:b], encoding="utf-8")
    (out / "test" / f"{name}.txt").write_text(t[b:], encoding="utf-8")
PY
M=(--set model.n_layers=4 --set model.d_model=128 --set model.n_heads=4 --set model.context=128
   --set train.batch_size=16 --set train.lr=3e-3 --set train.min_lr=3e-4 --set train.warmup_steps=20
   --set train.eval_every=0 --set train.ckpt_every=0 --set train.threads=2)
$L btm seed -c tiny -o "$W/btm" --set data.corpus="$W/data/train" --set train.max_steps=300 "${M[@]}" > "$W/seed.json"
$L btm branch "$W/btm" frank="$W/data/train/frank.txt" jekyll="$W/data/train/jekyll.txt" \
    tom="$W/data/train/tom.txt" --set train.max_steps=200 > /dev/null
# the compute-matched dense baseline: the seed trained on all three books for the experts' 3 x 200 steps
$L btm branch "$W/btm" dense="$W/data/train" --set train.max_steps=600 > /dev/null
$L btm train "$W/btm" > "$W/train.json"
E=(--only frank --only jekyll --only tom)
for d in frank jekyll tom; do
  for run in seed experts/frank experts/jekyll experts/tom experts/dense; do
    $L eval "$W/btm/$run" --data "$W/data/test/$d.txt" > "$W/eval-$d-$(basename $run).json"
  done
  $L btm ensemble "$W/btm" "${E[@]}" --data "$W/data/test/$d.txt" > "$W/ensemble-uniform-$d.json"
  $L btm ensemble "$W/btm" "${E[@]}" --data "$W/data/test/$d.txt" --dev "$W/data/dev/$d.txt" > "$W/ensemble-dev-$d.json"
  $L btm merge "$W/btm" "${E[@]}" -o "$W/merged-dev-$d" --dev "$W/data/dev/$d.txt" > "$W/merge-dev-$d.json"
  $L eval "$W/merged-dev-$d" --data "$W/data/test/$d.txt" > "$W/eval-$d-merged-dev.json"
done
$L btm merge "$W/btm" "${E[@]}" -o "$W/merged-uniform" > "$W/merge-uniform.json"
for d in frank jekyll tom; do
  $L eval "$W/merged-uniform" --data "$W/data/test/$d.txt" > "$W/eval-$d-merged-uniform.json"
done
