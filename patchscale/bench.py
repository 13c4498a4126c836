"""`patchscale bench CONFIG [k=v ...]`: time the compiled train step and report model-FLOP utilisation.

Utilisation is analytic model FLOPs per second (docs/reference.md's formulas, forward + backward =
3× forward, no rematerialisation counted) divided by a peak: (a) the matmul peak measured in
this process by timing large matrix products in the compute dtype, and (b) the vendor's dense
peak for the compute dtype when the device is known. Batches are synthetic and already on
the device, so this measures the step itself; `input_images_per_s` says separately how fast
the host pipeline can feed it.
"""

from __future__ import annotations

import datetime
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from patchscale import partitioning, provenance, results
from patchscale.data import pipeline
from patchscale.errors import UserError
from patchscale.models import flops
from patchscale.models.backbone import compute_dtype
from patchscale.program import Program, param_counts
from patchscale.run_spec import RunSpec

# Dense peak TFLOP/s per chip (TPU) or GPU (SXM), by compute dtype, from the vendors' data sheets.
VENDOR_PEAK_TFLOPS = {
    "TPU v4": {"bfloat16": 275.0},
    "TPU v5 lite": {"bfloat16": 197.0},  # v5e.
    "TPU v5p": {"bfloat16": 459.0},
    "TPU v5": {"bfloat16": 459.0},
    "TPU v6 lite": {"bfloat16": 918.0},  # v6e (Trillium).
    "A100": {"bfloat16": 312.0, "float32": 19.5},
    "H100": {"bfloat16": 989.4, "float32": 66.9},
    "H200": {"bfloat16": 989.4, "float32": 66.9},
}


def vendor_peak_flops(device_kind: str, dtype: str) -> float | None:
    """The data-sheet peak for a device kind (longest matching name wins), or None if unknown."""
    matches = [name for name in VENDOR_PEAK_TFLOPS if name.lower() in device_kind.lower()]
    if not matches:
        return None
    peak = VENDOR_PEAK_TFLOPS[max(matches, key=len)].get(dtype)
    return None if peak is None else peak * 1e12


def utilisation(flops_per_step: float, step_seconds: float, peak_flops: float | None) -> float | None:
    """Achieved FLOP/s as a fraction of a peak."""
    if not peak_flops:
        return None
    return flops_per_step / step_seconds / peak_flops


def time_calls(fn, repeats: int) -> dict:
    """Median and spread of `repeats` calls of `fn` (which must block until done)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "repeats": repeats}


def memory(compiled) -> dict:
    """Bytes from XLA's memory analysis of a compiled executable (no execution needed)."""
    analysis = compiled.memory_analysis()
    return {
        "temp_bytes": int(analysis.temp_size_in_bytes),  # Activations and other scratch.
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
        "alias_bytes": int(analysis.alias_size_in_bytes),
    }


def environment() -> dict:
    device = jax.devices()[0]
    env = provenance.environment()
    return {
        "device_kind": device.device_kind, "platform": device.platform, "device_count": jax.device_count(),
        "cpu": env["cpu"]["model"], "python": env["versions"]["python"],
        "jax_version": jax.__version__, "git_commit": env["git_commit"], "environment": env,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def matmul_peak(dtype, size: int | None = None, repeats: int = 7) -> dict:
    """FLOP/s of a square matmul chain in `dtype` on the first device: the measured peak.

    The fastest of `repeats` calls counts: a peak is what the device can do, and a shared host
    only ever makes a call slower.
    """
    if size is None:
        size = 2048 if jax.default_backend() == "cpu" else 8192
    chain = 4  # Several products per call so dispatch overhead is negligible.
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype) / size**0.5

    @jax.jit
    def products(x):
        for _ in range(chain):
            x = x @ b
        return x

    products(a).block_until_ready()
    timing = time_calls(lambda: products(a).block_until_ready(), repeats)
    return {"size": size, "dtype": jnp.dtype(dtype).name, "flops_per_s": 2.0 * size**3 * chain / timing["min_s"],
            **{f"matmul_{k}": v for k, v in timing.items()}}


def input_rate(config, size: int, batches: int = 20) -> float | None:
    """Images/s the host input pipeline delivers alone (None when the dataset is not prepared here)."""
    try:
        data = pipeline.train_iterator(config.data, size, config.train.batch_size, batches + 2, config.seed,
                                       config.augment)
        next(data)  # Start-up (threads, file opening) is not throughput.
    except (UserError, FileNotFoundError):
        return None
    start = time.perf_counter()
    for _ in range(batches):
        next(data)
    return batches * config.train.batch_size / (time.perf_counter() - start)


def save(path, payload: dict) -> None:
    """Write a benchmark result as JSON (atomically), creating its directory."""
    out = epath.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    results.write_json_atomic(out, payload)


def compiled_step(config):
    """(compiled train step, run_step, facts): one synthetic on-device batch, state kept inside.

    `run_step()` runs one step and blocks until it is done; `facts` has the image size, the
    dataset's channels and classes, the parameter count and the compile time.
    """
    spec = RunSpec.from_config(config)
    size, batch, classes, channels = spec.image_size, config.train.batch_size, spec.head_classes, spec.channels
    program = Program(spec, partitioning.make_mesh(config.mesh))
    state = program.init_state()
    start = time.perf_counter()
    step = program.compile_train_step(state)
    compile_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    images = {"image": rng.integers(0, 256, (batch, size, size, channels), dtype=np.uint8),
              "label": rng.integers(0, max(spec.dataset.num_classes, 1), batch).astype(np.int32)}
    if config.data.mask_feature:  # A segmentation dataset: random pixel classes.
        images["pixels"] = rng.integers(0, classes, (batch, size, size)).astype(np.int32)
    images = partitioning.global_batch(images, program.mesh)
    holder = {"state": state}

    def run_step():
        holder["state"], metrics = step(holder["state"], program.frozen, images)
        jax.block_until_ready(metrics)

    facts = {"image_size": size, "channels": channels, "num_classes": classes, "compile_s": compile_s,
             "params": param_counts(state["params"])["params"]}
    return step, run_step, facts


def xla_cost(compiled) -> dict:
    """XLA's FLOP count of a compiled step, honest about what it cannot see.

    On GPUs the matmuls and attention run as cuBLAS/cuDNN/Triton custom calls that the cost
    analysis does not count (it reported 0.6 of 7.0 analytic TFLOP for a DeiT-S/16 step), so
    with such calls `xla_flops_per_step` is None and the partial count is kept as a lower bound.
    """
    opaque = flops.opaque_calls(compiled)
    counted = flops.xla_flops_counted(compiled)
    if not opaque:
        return {"xla_flops_per_step": counted}
    return {"xla_flops_per_step": None, "xla_flops_lower_bound": counted, "xla_uncounted_calls": opaque}


def bench(config, steps: int = 10, warmup: int = 2, peak: dict | None = None, feed: bool = True,
          prepared: tuple | None = None) -> dict:
    """Compile the train step of `config` once and time `steps` calls after `warmup`.

    `peak`: a `matmul_peak` result measured earlier in this process (measured again if None);
    `feed=False` skips timing the host input pipeline; `prepared`: `compiled_step(config)`'s
    result when the caller needs the step too (to profile it).
    """
    step, one_step, facts = prepared or compiled_step(config)
    size, batch, compile_s = facts["image_size"], config.train.batch_size, facts["compile_s"]
    for _ in range(warmup):
        one_step()
    timing = time_calls(one_step, steps)
    dtype = compute_dtype(config.model.dtype)
    peak = peak or matmul_peak(dtype)
    device = jax.devices()[0]
    vendor = vendor_peak_flops(device.device_kind, jnp.dtype(dtype).name)
    tokens = flops.tokens_per_image(config.model, size)
    flops_per_step = flops.train_flops_per_image(config.model, size, facts["channels"], facts["num_classes"]) * batch
    seconds = timing["median_s"]
    measured_peak = peak["flops_per_s"] * jax.device_count()
    vendor_peak = None if vendor is None else vendor * jax.device_count()
    return {
        "image_size": size, "patch_size": config.model.patch_size, "mixer": config.model.mixer,
        "batch_size": batch, "tokens_per_image": tokens, "dtype": jnp.dtype(dtype).name,
        "compile_s": compile_s, **{f"step_{k}": v for k, v in timing.items()},
        "images_per_s": batch / seconds, "tokens_per_s": batch * tokens / seconds,
        "model_flops_per_step": flops_per_step, "achieved_flops_per_s": flops_per_step / seconds,
        "measured_peak_flops_per_s": measured_peak, "matmul": peak,
        "utilisation_measured_peak": utilisation(flops_per_step, seconds, measured_peak),
        "vendor_peak_flops_per_s": vendor_peak,
        "utilisation_vendor_peak": utilisation(flops_per_step, seconds, vendor_peak),
        **xla_cost(step), **memory(step), **environment(),
        "input_images_per_s": input_rate(config, size) if feed else None,
    }


def format_row(row: dict) -> str:
    """One human-readable line for a benchmark result."""
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"
    feed = "-" if row["input_images_per_s"] is None else f"{row['input_images_per_s']:.0f}"
    return (f"{row['mixer']} p={row['patch_size']} {row['tokens_per_image']} tok  batch {row['batch_size']}:"
            f" step {1e3 * row['step_median_s']:.1f} ms (min {1e3 * row['step_min_s']:.1f}, max"
            f" {1e3 * row['step_max_s']:.1f}), compile {row['compile_s']:.1f}s,"
            f" {row['images_per_s']:.0f} img/s, {row['tokens_per_s']:.0f} tok/s,"
            f" {row['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s = {pct(row['utilisation_measured_peak'])} of measured"
            f" peak ({row['measured_peak_flops_per_s'] / 1e9:.1f} GFLOP/s), {pct(row['utilisation_vendor_peak'])}"
            f" of vendor peak, temp memory {row['temp_bytes'] / 2**20:.1f} MiB, input pipeline alone {feed} img/s")
