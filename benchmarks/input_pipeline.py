"""Host input-pipeline throughput at 224² with the full DeiT augmentation, per CPU core.

    python benchmarks/input_pipeline.py      # writes results/bench/input_pipeline_cpu.json

Data: the scikit-image sample photographs (tests/photos.py), resized to 400×350 (about an average
ImageNet photo) and stored as raw tensors, so no JPEG decoding is inside the pipeline numbers.
JPEG decoding (what TFDS ImageNet stores) is timed separately, with PIL, on the same photos
encoded at quality 90. The pipeline runs with one grain reader thread (images/s
per core) and with two; the on-device Mixup/CutMix and erasing are not host work.

Then the arithmetic of how many host cores keep a ViT-B/16 at 224² fed: cores = images/s the
accelerators consume / images/s per core, where a chip consumes achieved FLOP/s / training FLOPs
per image (patchscale's analytic count); the achieved rate per chip is an assumption, stated.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from benchmarks.common import environment, save  # noqa: E402
from patchscale.data import pipeline  # noqa: E402
from patchscale.defaults import base_config  # noqa: E402
from patchscale.models import flops  # noqa: E402
from tests import photos  # noqa: E402

IMAGENET_LIKE = (400, 350)  # (width, height)


def deit_config(data_dir: str, threads: int):
    c = base_config()
    c.data.name, c.data.data_dir, c.data.image_size, c.data.interpolation = photos.NAME, data_dir, 224, "bicubic"
    c.data.worker_threads, c.data.prefetch = threads, max(4, threads)
    a = c.augment
    a.crop, a.hflip, a.policy, a.random_erasing, a.repeats = "random_resized", 0.5, "rand-m9-mstd0.5-inc1", 0.25, 3
    return c


def pipeline_rate(data_dir: str, threads: int, batch: int, batches: int) -> float:
    c = deit_config(data_dir, threads)
    iterator = pipeline.train_iterator(c.data, 224, batch, batches + 2, seed=0, augment_config=c.augment)
    next(iterator)  # Threads and files start up.
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def jpeg_decode_rate(repeats: int = 20) -> float:
    from PIL import Image

    blobs = []
    for image in photos.load_photos(IMAGENET_LIKE):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        blobs.append(buffer.getvalue())
    start = time.perf_counter()
    for _ in range(repeats):
        for blob in blobs:
            np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    return repeats * len(blobs) / (time.perf_counter() - start)


def vit_b16_demand(achieved_tflops: float) -> dict:
    c = base_config()
    c.model.size, c.model.patch_size = "B", 16
    per_image = flops.train_flops_per_image(c.model, 224, 3, 1000)
    return {"train_flops_per_image": per_image, "assumed_achieved_tflops_per_chip": achieved_tflops,
            "images_per_s_per_chip": achieved_tflops * 1e12 / per_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--achieved-tflops", type=float, default=100.0,
                        help="assumed achieved bf16 TFLOP/s per accelerator chip for ViT-B/16 training")
    parser.add_argument("--chips-per-host", type=int, default=4)
    parser.add_argument("--out", default="results/bench/input_pipeline_cpu.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        photos.write(data_dir, size=IMAGENET_LIKE)
        rates = {threads: pipeline_rate(data_dir, threads, args.batch, args.batches) for threads in (1, 2)}
    decode = jpeg_decode_rate()
    per_core = 1.0 / (1.0 / rates[1] + 1.0 / decode)  # Decode, then augment, on one core.
    demand = vit_b16_demand(args.achieved_tflops)
    host_demand = demand["images_per_s_per_chip"] * args.chips_per_host
    row = {
        **environment(),
        "command": " ".join(["python", "benchmarks/input_pipeline.py", *sys.argv[1:]]),
        "recipe": "DeiT: RandomResizedCrop 224 bicubic, flip, rand-m9-mstd0.5-inc1, repeated augmentation x3"
                  " (random erasing and Mixup/CutMix run on device)",
        "augment_images_per_s_1_thread": rates[1], "augment_images_per_s_2_threads": rates[2],
        "jpeg_decode_images_per_s_1_core": decode,
        "decode_and_augment_images_per_s_per_core": per_core,
        "vit_b16": demand, "chips_per_host": args.chips_per_host,
        "host_images_per_s_needed": host_demand,
        "cores_needed_per_host": host_demand / per_core,
    }
    for key, value in row.items():
        print(f"{key}: {value}")
    save(args.out, row)


if __name__ == "__main__":
    main()
