r"""How fast memjax trains, against the matmul limit of the machine (JSON).

One command prints a JSON report of this machine:

  python benchmarks/report.py              # full report
  python benchmarks/report.py --quick      # reduced sizes (2-3 min, 2-core CPU)
  python benchmarks/report.py --sections=matmul,training --output=report.json

Sections (``--sections``):
  matmul          peak GFLOP/s of a large float32 matmul, measured at the start
                  and the end of the run (the larger is the peak).
  training        training throughput of S vmapped seeds per model: examples/s,
                  seed-epochs/s (epochs of 4,000 examples, the mnist5k train
                  split) and achieved GFLOP/s as a fraction of the matmul
                  peak; GPU memory use on a GPU. FLOPs are counted from the
                  model's layer shapes (``analytic_flops``: 2 per multiply-add
                  of every dense and conv layer, forward, weight and input
                  gradients), the same on every backend; each row also gives
                  XLA's count of the step before backend optimization
                  (``hlo_flops_per_example``) as a cross-check. (XLA's count
                  of the compiled program, used before, misses the cuBLAS and
                  cuDNN calls that carry a GPU's work.)
  seed_vmap       S seeds vmapped vs the same S seeds trained one after another,
                  for S in --seed_counts, timed in alternating rounds: the
                  speedup of one vmap of all S seeds, of the S seeds vmapped
                  in chunks of each of --seed_chunks inside the same compiled
                  epoch, and of memjax's default execution
                  (``training.choose_seed_chunk``: one of those).
  per_example     input-gradient norms and GraNd (memjax.per_example), vmapped
                  vs a loop of one jitted call per example.
  device_scaling  the same S-seed training on meshes of 1, 2, 4 devices
                  (memjax.sharding): fake CPU devices in subprocesses on a CPU,
                  subsets of the real devices on an accelerator.

Inputs are synthetic CIFAR-shaped images (28x28x3 after the paper's crop); the
speed of a step does not depend on the pixel values. Times are the best of
--repeats calls after a compile-and-warm-up call. With --distributed every
process writes its report part and process 0 merges and prints them.

Runtime: on a 2-core CPU the conv-model rows of the training section take
most of it: AlexNet trains at about 570 examples/s, Arpit's CNN and Inception
at about 85-110 (issue 15's conv fixes, memjax.conv; before them AlexNet ran
at about 20 and the full report took an hour or more); leave them out with
--training_runs. Measured figures
and their commands: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import optax

from memjax import cost
from memjax import keys
from memjax import per_example
from memjax import reporting
from memjax import sharding
from memjax import training

SECTIONS = ("matmul", "training", "seed_vmap", "per_example", "device_scaling")
EPOCH_EXAMPLES = 4000  # a seed-epoch: one pass over the mnist5k train split

flags.DEFINE_list("sections", list(SECTIONS),
                  f"Subset of {', '.join(SECTIONS)}.")
flags.DEFINE_bool("quick", False, "Reduced sizes: a few minutes on a CPU.")
flags.DEFINE_bool("smoke", False, "Tiny sizes: seconds, for tests.")
flags.DEFINE_list("seed_counts", ["1", "8", "32", "100"],
                  "Seed counts of the seed_vmap section.")
flags.DEFINE_list("vmap_models", ["mlp1x512", "mlp2x16"],
                  "Models of the seed_vmap section.")
flags.DEFINE_list("training_runs",
                  ["mlp1x512:32:128", "mlp1x512:8:1024", "mlp1x512:1:1024",
                   "mlp2x16:100:128", "alexnet:1:128", "arpit_cnn:1:128",
                   "inception:1:128"],
                  "model:seeds:batch_size rows of the training section.")
flags.DEFINE_list("seed_chunks", ["4", "8", "16"],
                  "seed_vmap also times the seeds vmapped in chunks of each "
                  "of these sizes (TrainConfig.seed_chunk); empty: none.")
flags.register_validator(
    "seed_chunks", lambda v: all(c.isdigit() and int(c) >= 1 for c in v),
    "--seed_chunks: a comma-separated list of integers >= 1.")
flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (best kept).")
flags.DEFINE_string("output", None, "Also write the JSON report here.")
flags.DEFINE_bool("distributed", False,
                  "Call jax.distributed.initialize() (multi-host runs).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Processes in a distributed run.")
flags.DEFINE_integer("process_id", None, "This process's id.")
flags.DEFINE_string("parts_dir", "runs/benchmark_parts",
                    "Where processes write their parts with --distributed.")
flags.DEFINE_integer("scaling_worker_devices", None,
                     "Internal: run one device_scaling measurement and exit.")
FLAGS = flags.FLAGS

INPUT_SHAPE, NUM_CLASSES = (28, 28, 3), 10


def seed_chunks() -> tuple[int, ...]:
  return tuple(int(c) for c in FLAGS.seed_chunks)


def sizes() -> dict:
  """Problem sizes of the current mode."""
  if FLAGS.smoke:
    return dict(matmul=256, steps=2, conv_steps=1, per_example=32, loop=8,
                per_example_model="mlp1x16", scaling_model="mlp1x16",
                scaling_seeds=4, scaling_devices=(2,), seed_counts=(1, 4),
                vmap_models=("mlp1x16",), training_runs=("mlp1x16:4:64",),
                seed_chunks=(2,), repeats=1)
  if FLAGS.quick:
    return dict(matmul=1024, steps=4, conv_steps=1, per_example=512, loop=64,
                per_example_model="mlp1x512", scaling_model="mlp1x512",
                scaling_seeds=8, scaling_devices=(1, 2, 4),
                seed_counts=(1, 8, 32), vmap_models=("mlp1x512", "mlp2x16"),
                training_runs=("mlp1x512:32:128", "mlp1x512:1:1024",
                               "alexnet:1:128"), seed_chunks=seed_chunks(),
                repeats=2)
  return dict(matmul=2048, steps=8, conv_steps=2, per_example=2000, loop=200,
              per_example_model="mlp1x512", scaling_model="mlp1x512",
              scaling_seeds=16, scaling_devices=(1, 2, 4),
              seed_counts=tuple(int(s) for s in FLAGS.seed_counts),
              vmap_models=tuple(FLAGS.vmap_models),
              training_runs=tuple(FLAGS.training_runs),
              seed_chunks=seed_chunks(), repeats=FLAGS.repeats)


def alternating_best_times(fns: dict, repeats: int) -> dict:
  """name -> best wall time of ``fns[name]()`` over ``repeats`` rounds, after
  one warm-up call each; the order alternates between rounds, so that a
  change in the machine's load hits every variant alike."""
  for fn in fns.values():
    jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for round_ in range(repeats):
    for name in (list(fns) if round_ % 2 == 0 else list(fns)[::-1]):
      start = time.perf_counter()
      jax.block_until_ready(fns[name]())
      times[name].append(time.perf_counter() - start)
  return {name: min(t) for name, t in times.items()}


def best_time(fn, repeats: int) -> float:
  """Best wall time of ``fn()`` (blocked until ready) after one warm-up call."""
  return alternating_best_times({"fn": fn}, repeats)["fn"]


def analytic_flops(trainer, batch_size: int) -> float:
  """FLOPs of one SGD step of one seed per example, counted from the model's
  layer shapes, independent of any backend's compiled program
  (``memjax.cost.training_flops``: 2 x (3 x all multiply-adds - the first
  layer's); elementwise work is left out)."""
  return cost.training_flops(trainer, batch_size)


def hlo_flops(jitted, *args) -> float:
  """FLOPs of one call as XLA's cost analysis counts them in the program
  before backend optimization (no library calls hidden from it)."""
  cost = jitted.lower(*args).cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost["flops"])


def matmul_peak(n: int, repeats: int) -> dict:
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  seconds = best_time(lambda: matmul(a, b), max(repeats, 3))
  return {"n": n, "seconds": seconds, "gflops": 2 * n**3 / seconds / 1e9}


def memory_stats() -> dict | None:
  """Peak and current bytes on device 0 (None where the backend has none)."""
  stats = jax.local_devices()[0].memory_stats()
  if not stats:
    return None
  return {k: stats[k] for k in ("peak_bytes_in_use", "bytes_in_use",
                                "bytes_limit") if k in stats}


class Workload:
  """S seeds of one model on synthetic data of ``steps`` minibatches."""

  def __init__(self, model: str, num_seeds: int, batch_size: int, steps: int):
    self.config = training.TrainConfig(model=model, num_seeds=num_seeds,
                                       batch_size=batch_size, max_epochs=1)
    self.trainer = training.cached_trainer(self.config, INPUT_SHAPE,
                                           NUM_CLASSES)
    self.num_train = steps * batch_size
    self.steps = steps
    key_x, key_y = jax.random.split(jax.random.key(0))
    self.x = jax.random.normal(key_x, (self.num_train,) + INPUT_SHAPE)
    self.y = jax.random.randint(key_y, (self.num_train,), 0, NUM_CLASSES)
    self.keys = keys.seed_keys(self.config.seed, self.config.num_seeds)
    self.state = self.trainer.init(self.keys)
    self.index = jnp.broadcast_to(jnp.arange(self.num_train),
                                  (num_seeds, self.num_train))

  def epoch(self):
    """One epoch (``steps`` SGD steps) of every seed. ``train_epoch`` donates
    the state it is given, so each epoch continues from the last."""
    self.state, losses = self.trainer.train_epoch(
        self.state, self.keys, 0, self.x, self.y, self.index)
    return self.state, losses

  def flops_per_example(self) -> dict:
    """Analytic FLOPs of one seed's SGD step per example, and the cross-check:
    XLA's count of the same one-seed step before backend optimization."""
    b = self.config.batch_size
    one = jax.tree.map(lambda a: a[0], self.state)
    hlo = hlo_flops(jax.jit(self.trainer.train_step), one, self.keys[0],
                    self.x[:b], self.y[:b])
    return {"analytic": analytic_flops(self.trainer, b), "hlo": hlo / b}

  def one_seed(self, lane: int) -> "Workload":
    """Seed ``lane`` alone, as a 1-seed workload on the same data."""
    # A copy: slicing a 1-seed state may return the very buffers that
    # ``train_epoch`` then donates.
    take = lambda a: jnp.copy(a[lane:lane + 1])
    single = copy.copy(self)
    single.state, single.keys, single.index = (
        jax.tree.map(take, self.state), take(self.keys), take(self.index))
    return single


def training_section(size: dict) -> list[dict]:
  """Throughput rows; ``build_report`` adds the fraction of the matmul peak."""
  rows = []
  for spec in size["training_runs"]:
    model, seeds, batch = spec.split(":")
    conv = not model.startswith("mlp")
    work = Workload(model, int(seeds), int(batch),
                    size["conv_steps" if conv else "steps"])
    seconds = best_time(work.epoch, size["repeats"])
    examples = work.config.num_seeds * work.num_train
    flops = work.flops_per_example()
    gflops = flops["analytic"] * examples / seconds / 1e9
    rows.append({
        "model": model, "seeds": work.config.num_seeds,
        "batch_size": work.config.batch_size, "steps": work.steps,
        "seconds": seconds, "examples_per_s": examples / seconds,
        "seed_epochs_per_s": examples / seconds / EPOCH_EXAMPLES,
        "gflops": gflops, "flops_per_example": flops["analytic"],
        "hlo_flops_per_example": flops["hlo"],
        "memory": memory_stats()})
    print(f"training {spec}: {gflops:.1f} GFLOP/s", file=sys.stderr)
  return rows


def chunked(work: Workload, chunk: int) -> Workload:
  """``work`` with its seeds vmapped in chunks of ``chunk``."""
  out = copy.copy(work)
  out.trainer = training.cached_trainer(
      dataclasses.replace(work.config, seed_chunk=chunk), INPUT_SHAPE,
      NUM_CLASSES)
  out.state = jax.tree.map(jnp.copy, work.state)
  return out


def seed_vmap_section(size: dict) -> list[dict]:
  """Per (model, S): one vmap of S seeds, S seeds vmapped in chunks of each
  of ``seed_chunks``, and the S seeds one after another (each a jitted
  1-seed epoch), timed in alternating rounds."""
  rows = []
  for model in size["vmap_models"]:
    for seeds in size["seed_counts"]:
      work = Workload(model, seeds, 128, size["steps"])
      singles = [work.one_seed(lane) for lane in range(seeds)]
      default_chunk = work.trainer.config.seed_chunk  # memjax's choice
      variants = {"one vmap": chunked(work, seeds).epoch}
      chunks = set(size["seed_chunks"]) | ({default_chunk} if default_chunk
                                           else set())
      for chunk in sorted(c for c in chunks if c < seeds):
        variants[f"chunks of {chunk}"] = chunked(work, chunk).epoch
      variants["loop"] = lambda: [one.epoch() for one in singles]
      seconds = alternating_best_times(variants, size["repeats"])
      loop = seconds.pop("loop")
      default = ("one vmap" if default_chunk is None or default_chunk >= seeds
                 else f"chunks of {default_chunk}")
      row = {"model": model, "seeds": seeds, "batch_size": 128,
             "steps": work.steps, "sequential_seconds": loop,
             "sequential_seconds_per_seed": loop / seeds,
             "vmapped_seconds": seconds["one vmap"],
             "vmapped_speedup": loop / seconds["one vmap"],
             "chunked_speedups": {name: loop / t for name, t in
                                  seconds.items() if name != "one vmap"},
             "default_seed_chunk": default_chunk, "default": default,
             "default_speedup": loop / seconds[default]}
      rows.append(row)
      print(f"seed_vmap {model} S={seeds}: memjax's default ({default}) "
            f"{row['default_speedup']:.2f}x a loop; one vmap "
            f"{row['vmapped_speedup']:.2f}x"
            + "".join(f", {name} {x:.2f}x"
                      for name, x in row["chunked_speedups"].items()),
            file=sys.stderr)
  return rows


def per_example_section(size: dict) -> list[dict]:
  model = size["per_example_model"]
  work = Workload(model, 1, 128, 1)
  trainer = work.trainer
  state = jax.tree.map(lambda a: a[0], work.state)
  n, loop = size["per_example"], size["loop"]
  x = jax.random.normal(jax.random.key(2), (n,) + INPUT_SHAPE)
  y = jnp.arange(n) % NUM_CLASSES
  args = (state.params, state.batch_stats)
  input_grad = jax.grad(lambda p, b, xi, yi: per_example.example_loss(
      trainer, p, b, xi, yi), argnums=2)
  param_grad = jax.grad(lambda p, b, xi, yi: per_example.example_loss(
      trainer, p, b, xi, yi))
  cases = {
      "input_gradient_l1": (
          jax.jit(lambda p, b, x, y: per_example.input_gradient_norms(
              trainer, p, b, x, y, norm="l1")),
          jax.jit(lambda p, b, xi, yi: jnp.abs(
              input_grad(p, b, xi, yi)).sum())),
      "grand": (
          jax.jit(lambda p, b, x, y: per_example.grand(trainer, p, b, x, y)),
          jax.jit(lambda p, b, xi, yi: optax.global_norm(
              param_grad(p, b, xi, yi)))),
  }
  rows = []
  for name, (vectorized, single) in cases.items():
    fast = best_time(lambda: vectorized(*args, x, y), size["repeats"])
    slow = best_time(lambda: [single(*args, x[i], y[i]) for i in range(loop)],
                     size["repeats"])
    rows.append({"quantity": name, "model": model, "examples": n,
                 "vectorized_examples_per_s": n / fast,
                 "loop_examples": loop, "loop_examples_per_s": loop / slow,
                 "speedup": (n / fast) / (loop / slow)})
  return rows


def scaling_measurement(num_devices: int, size: dict) -> dict:
  """The same S-seed epoch on a mesh of the first ``num_devices``."""
  mesh = sharding.make_mesh(jax.devices()[:num_devices])
  work = Workload(size["scaling_model"], size["scaling_seeds"], 128,
                  size["steps"])
  work.trainer = training.cached_trainer(work.config, INPUT_SHAPE,
                                         NUM_CLASSES, sharded=True)
  placement = sharding.SeedPlacement(mesh, work.config.num_seeds)
  work.keys = placement.keys(work.config)
  # Padding lanes start from a copy of the last seed: the same work per step.
  work.state = placement.place_unpadded_state(work.state)
  work.index = placement.place_per_seed(work.index)
  work.x = placement.place_shared(work.x)
  work.y = placement.place_shared(work.y)
  seconds = best_time(work.epoch, size["repeats"])
  examples = placement.num_padded * work.num_train
  return {"devices": num_devices, "model": size["scaling_model"],
          "seeds": placement.num_padded,
          "seconds": seconds, "examples_per_s": examples / seconds}


def device_scaling_section(size: dict) -> list[dict]:
  if jax.default_backend() != "cpu":
    counts = [k for k in (1, 2, 4, 8, 16) if k <= jax.local_device_count()]
    return [dict(scaling_measurement(k, size), fake_devices=False)
            for k in counts]
  rows = []
  for k in size["scaling_devices"]:
    env = dict(os.environ,
               XLA_FLAGS=f"--xla_force_host_platform_device_count={k}")
    mode = ["--smoke"] if FLAGS.smoke else ["--quick"] if FLAGS.quick else []
    proc = subprocess.run(
        [sys.executable, __file__, f"--scaling_worker_devices={k}",
         f"--repeats={size['repeats']}"] + mode,
        env=env, capture_output=True, text=True, check=True)
    rows.append(dict(json.loads(proc.stdout), fake_devices=True))
  base = rows[0]["examples_per_s"]
  for row in rows:
    row["speedup_vs_fewest_devices"] = row["examples_per_s"] / base
  return rows


def machine() -> dict:
  device = jax.devices()[0]
  return {"platform": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(),
          "process_count": jax.process_count(), "cpu_count": os.cpu_count(),
          "load_average": list(os.getloadavg()),
          "processor": platform.processor() or platform.machine(),
          "jax": jax.__version__,
          # float32 matmuls: "default" lets XLA use TF32 tensor cores on
          # NVIDIA GPUs; "highest" is true float32.
          "matmul_precision": str(jax.config.jax_default_matmul_precision
                                  or "default"),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def checks(report: dict) -> dict:
  """The issue's two CPU targets, where the report measured them."""
  out = {}
  # Issue 15: with memjax's default execution of the seeds
  # (training.choose_seed_chunk), S seeds at least as fast as a loop of the
  # same seeds, for every MLP at 8-100 seeds.
  for row in report.get("seed_vmap", []):
    if row["model"].startswith("mlp") and 8 <= row["seeds"] <= 100:
      out[f"default_execution_of_{row['seeds']}_seeds_{row['model']}_at_"
          "least_as_fast_as_a_loop"] = {"ok": row["default_speedup"] >= 1.0,
                                        "speedup": row["default_speedup"],
                                        "execution": row["default"]}
  mlp = [r for r in report.get("training", []) if r["model"] == "mlp1x512"]
  if mlp:
    best = max(mlp, key=lambda r: r["fraction_of_matmul_peak"])
    out["mlp1x512_at_least_half_of_matmul_peak"] = {
        "ok": best["fraction_of_matmul_peak"] >= 0.5,
        "fraction": best["fraction_of_matmul_peak"],
        "batch_size": best["batch_size"], "seeds": best["seeds"]}
  return out


def build_report(size: dict) -> dict:
  report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds"), "mode": "smoke" if FLAGS.smoke else
            "quick" if FLAGS.quick else "full", "machine": machine()}
  sections = set(FLAGS.sections)
  needs_peak = sections & {"matmul", "training"}
  if needs_peak:
    report["matmul"] = [matmul_peak(size["matmul"], size["repeats"])]
  if "training" in sections:
    report["training"] = training_section(size)
  if "seed_vmap" in sections:
    report["seed_vmap"] = seed_vmap_section(size)
  if "per_example" in sections:
    report["per_example"] = per_example_section(size)
  if "device_scaling" in sections:
    report["device_scaling"] = device_scaling_section(size)
  if needs_peak:
    report["matmul"].append(matmul_peak(size["matmul"], size["repeats"]))
    peak = max(m["gflops"] for m in report["matmul"])
    report["matmul_peak_gflops"] = peak
    for row in report.get("training", []):
      row["fraction_of_matmul_peak"] = row["gflops"] / peak
  report["checks"] = checks(report)
  return report


def main(argv):
  del argv
  unknown = set(FLAGS.sections) - set(SECTIONS)
  if unknown:
    raise app.UsageError(f"Unknown sections {sorted(unknown)}; valid: "
                         f"{', '.join(SECTIONS)}.")
  size = sizes()
  if FLAGS.scaling_worker_devices is not None:
    print(json.dumps(scaling_measurement(FLAGS.scaling_worker_devices, size)))
    return
  sharding.initialize_distributed(FLAGS.distributed, FLAGS.coordinator_address,
                                  FLAGS.num_processes, FLAGS.process_id)
  report = build_report(size)
  if jax.process_count() > 1:
    reporting.write_process_results(FLAGS.parts_dir, "report",
                                   {str(jax.process_index()): report})
    report = reporting.merge_process_results(FLAGS.parts_dir, "report")
    if not report:
      return
  text = json.dumps(report, indent=1)
  print(text)
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  app.run(main)
