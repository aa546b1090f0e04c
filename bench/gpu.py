"""Training samples/s on a GPU against the CPU, through trainserve's own Trainer.

The reference jobs of bench/train.py (100k×20 and 1M×20 numeric rows, 3 classes, MLP
64-64, Adam, batch 256, 20% validation) and a larger network (512-512-512, batch 1024),
each on the CPU (torch threads = cores), on CUDA in float32, and on CUDA with bf16
autocast; then the GPU default batch (512) against the CPU's (32) for the reference
network. Samples/s is the mean of the epochs' own ``samples_per_s`` after the first
(warm-up) epoch; the tensors move to the device once per job, as in the worker.

It also checks that a model trained on the GPU predicts the same on the CPU (the API
processes' device): the bundle built from the trainer's final state, loaded from its
stored bytes, against the trainer's network on the GPU, max |Δp| ≤ 1e-5.

Without CUDA it says so and measures the CPU only. Usage:
    python bench/gpu.py [--sizes 100000,1000000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train import split, table  # noqa: E402
from service.ml.device import GPU_BATCH_SIZE, describe  # noqa: E402
from service.ml.inference import ModelBundle  # noqa: E402
from service.ml.network import Architecture  # noqa: E402
from service.ml.preprocessing import FeatureEncoder  # noqa: E402
from service.ml.training import Trainer, TrainingConfig  # noqa: E402

NETWORKS = {"reference 64-64": ((64, 64), 256), "larger 512-512-512": ((512, 512, 512), 1024)}


def run(data, hidden, batch, device: torch.device, precision: str, epochs: int) -> dict:
    (x_train, y_train), (x_val, y_val) = data
    config = TrainingConfig(
        hidden_layers=hidden,
        batch_size=batch,
        epochs=epochs,
        early_stopping_patience=None,
        precision=precision,
        seed=0,
    )
    arch = Architecture(x_train.shape[1], 3, hidden, "relu", 0.0)
    started = time.perf_counter()
    trainer = Trainer(arch, config, x_train, y_train, x_val, y_val, device=device)
    records = list(trainer.fit())
    wall = time.perf_counter() - started
    rates = [r.samples_per_s for r in records[1:]] or [records[0].samples_per_s]
    return {
        "trainer": trainer,
        "samples_per_s": statistics.mean(rates),
        "wall_s": wall,
        "val_accuracy": records[-1].val_accuracy,
    }


def same_on_cpu(trainer: Trainer, x_val: torch.Tensor) -> float:
    """Max |Δ probability| between the GPU network and its stored bundle on the CPU."""
    _, state = trainer.final_state()
    # Any encoder will do: only the networks' outputs on the same inputs are compared.
    encoder = FeatureEncoder.fit(pd.DataFrame({"f0": [0.0, 1.0]}), {"f0": "numeric"})
    bundle = ModelBundle.from_state(trainer.arch, encoder, ("a", "b", "c"), state)
    bundle = ModelBundle.load(bundle.describe(), bundle.weights())
    trainer.model.eval()
    x = x_val[:4096]
    with torch.inference_mode():
        on_gpu = torch.softmax(trainer.model(x.to(trainer.device)).double(), 1).cpu().numpy()
    on_cpu = bundle.predict_inputs(x.numpy())
    return float(np.abs(on_gpu - on_cpu).max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    cuda = torch.cuda.is_available()
    devices = [(torch.device("cpu"), "fp32")]
    if cuda:
        gpu = torch.device("cuda:0")
        devices += [(gpu, "fp32"), (gpu, "bf16")]
        print(f"GPU: {describe(gpu)}; CPU: {os.cpu_count()} cores; torch {torch.__version__}")
    else:
        print(
            f"no CUDA device: torch {torch.__version__} sees none, so only the CPU is measured "
            f"({os.cpu_count()} cores); run this on a GPU machine for the GPU columns"
        )
    print(f"epochs {args.epochs}; samples/s = mean of epochs 2..N\n")
    print(f"{'rows':>9}  {'network':<20} {'batch':>5}  {'device':<12} {'samples/s':>11}  "
          f"{'× CPU':>6}  {'wall s':>7}  {'val acc':>7}")  # fmt: skip
    worst = 0.0
    for rows in (int(s) for s in args.sizes.split(",")):
        data = split(*table(rows))
        for name, (hidden, batch) in NETWORKS.items():
            cpu_rate = None
            for device, precision in devices:
                result = run(data, hidden, batch, device, precision, args.epochs)
                cpu_rate = cpu_rate or result["samples_per_s"]
                label = "cpu" if device.type == "cpu" else f"cuda {precision}"
                print(
                    f"{rows:>9}  {name:<20} {batch:>5}  {label:<12} "
                    f"{result['samples_per_s']:>11,.0f}  "
                    f"{result['samples_per_s'] / cpu_rate:>5.1f}×  {result['wall_s']:>7.1f}  "
                    f"{result['val_accuracy']:>7.3f}"
                )
                if device.type == "cuda" and precision == "fp32":
                    worst = max(worst, same_on_cpu(result["trainer"], data[1][0]))
        # The default batch of a job on each device, reference network.
        defaults = [(torch.device("cpu"), 32)]
        if cuda:
            defaults += [(gpu, 32), (gpu, GPU_BATCH_SIZE)]
        for device, batch in defaults:
            result = run(data, (64, 64), batch, device, "fp32", args.epochs)
            print(
                f"{rows:>9}  {'default batch':<20} {batch:>5}  {device.type:<12} "
                f"{result['samples_per_s']:>11,.0f}  {'':>6}  {result['wall_s']:>7.1f}  "
                f"{result['val_accuracy']:>7.3f}"
            )
    if cuda:
        print(f"\nGPU-trained bundles predicting on the CPU: max |Δp| = {worst:.2e} (≤ 1e-5)")
        return 0 if worst <= 1e-5 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
