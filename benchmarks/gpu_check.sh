#!/usr/bin/env bash
# Issue 15's checks on a GPU machine, as one script (about 6-8 minutes on one
# H200). Writes every output into ${OUT:-runs/gpu_check}:
#   report_default.json   benchmarks/report.py (matmul peak, training rows
#                         with analytic FLOPs, 100-seed mlp1x512 and 32-seed
#                         AlexNet, seed_vmap) at JAX's default float32 matmul
#                         precision (on NVIDIA GPUs: TF32 tensor cores)
#   report_highest.json   the matmul and training sections again at
#                         JAX_DEFAULT_MATMUL_PRECISION=highest (true float32)
#   alexnet_epoch.json    one AlexNet epoch of 50,000 CIFAR-shaped examples
#   random_labels.log     the main job on its embedded default
# Utilization target: >= 40% of the measured matmul peak for 100-seed
# mlp1x512 and 32-seed AlexNet (each report's "fraction_of_matmul_peak").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
python -c "import jax; print(jax.devices(), jax.__version__)" | tee "$OUT/devices.txt"
RUNS=mlp1x512:100:128,alexnet:32:128,mlp1x512:1:1024,arpit_cnn:32:128,alexnet:1:128
timeout 240 python benchmarks/report.py --sections=matmul,training,seed_vmap \
    --training_runs=$RUNS --seed_counts=1,8,32,100 \
    --vmap_models=mlp1x512,mlp2x16 --output="$OUT/report_default.json" \
    > "$OUT/report_default.log" 2>&1
echo "default precision: rc=$?"
JAX_DEFAULT_MATMUL_PRECISION=highest timeout 150 python benchmarks/report.py \
    --sections=matmul,training --training_runs=$RUNS \
    --output="$OUT/report_highest.json" > "$OUT/report_highest.log" 2>&1
echo "highest precision: rc=$?"
timeout 120 python - "$OUT/alexnet_epoch.json" <<'EOF' 2>&1 | tail -3
import json, sys, time
sys.path.insert(0, "benchmarks")
import jax
import report
steps = -(-50_000 // 128)
work = report.Workload("alexnet", 1, 128, steps)
jax.block_until_ready(work.epoch())  # compile and warm up
start = time.perf_counter()
jax.block_until_ready(work.epoch())
seconds = time.perf_counter() - start
row = {"model": "alexnet", "examples": steps * 128, "seconds": seconds,
       "examples_per_s": steps * 128 / seconds}
json.dump(row, open(sys.argv[1], "w"), indent=1)
print(row)
EOF
timeout 120 python experiments/random_labels.py --workdir="$OUT/random_labels" \
    --noprogress --overwrite > "$OUT/random_labels.log" 2>&1
echo "random_labels: rc=$?"
tail -12 "$OUT/random_labels.log"
python - "$OUT" <<'EOF'
import json, sys
for name in ("report_default", "report_highest"):
  try:
    report = json.load(open(f"{sys.argv[1]}/{name}.json"))
  except (OSError, ValueError) as e:
    print(name, "missing:", e)
    continue
  print(name, "peak", round(report["matmul_peak_gflops"]), "GFLOP/s")
  for row in report.get("training", []):
    print(f"  {row['model']} S={row['seeds']} batch {row['batch_size']}: "
          f"{row['examples_per_s']:,.0f} ex/s, {row['gflops']:,.0f} GFLOP/s, "
          f"{row['fraction_of_matmul_peak']:.0%} of peak")
  for row in report.get("seed_vmap", []):
    print(f"  seed_vmap {row['model']} S={row['seeds']}: "
          f"{row['vmapped_speedup']:.2f}x a loop")
EOF
