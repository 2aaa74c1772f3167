"""CPU inference speed: PyTorch (float32, eager) against onnxruntime on the exported model.

One classifier and one segmenter from the registry, untrained (speed does not depend on the
weights), each exported with ``braintumor.export.export_onnx`` (which checks parity first) and
timed at batch 1 and 16 on the same random network inputs, preprocessing excluded, with the
same number of threads for both (``--threads``, default 1: on a shared two-core machine two
OpenMP threads per process make PyTorch's figures collapse under contention). The two
backends are timed in alternating rounds in one process (see ``speed_common``). Writes
``benchmarks/results/onnx_speed.json``::

    python benchmarks/onnx_speed.py [--steps N] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from braintumor.data.preprocess import PreprocessSpec
from braintumor.export import export_onnx
from braintumor.models import build_model
from braintumor.models.folder import LoadedModel, ModelInfo
from speed_common import (
    RESULTS,
    Variant,
    interleaved_timing,
    machine_info,
    write_result,
)

MODELS = (
    # name, task, outputs, in_channels, input size
    ("resnet18", "classify", 4, 3, 224),
    ("unet", "segment", 1, 1, 256),
)


def _loaded(arch: str, task: str, outputs: int, channels: int, size: int, folder: Path):
    net = build_model(arch, num_classes=outputs, in_channels=channels).eval()
    info = ModelInfo(
        task=task,
        architecture=arch,
        num_outputs=outputs,
        in_channels=channels,
        class_names=[f"class{i}" for i in range(outputs)],
        image_size=size,
        preprocessing=PreprocessSpec(image_size=size, in_channels=channels).to_dict(),
    )
    return LoadedModel(model=net, info=info, path=folder)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(steps: int, warmup: int, batches: tuple[int, ...], threads: int) -> dict[str, Any]:
    """Images per second of both backends (``threads`` each) for every model and batch size."""
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, task, outputs, channels, size in MODELS:
            loaded = _loaded(arch, task, outputs, channels, size, Path(tmp))
            onnx_path = export_onnx(loaded, Path(tmp) / f"{arch}.onnx")
            session = _session(onnx_path, threads)
            net = loaded.model
            for batch in batches:
                x = torch.randn(batch, channels, size, size)
                feed = {"input": x.numpy()}

                def torch_step(x: torch.Tensor = x, n: int = batch, net: Any = net) -> int:
                    with torch.inference_mode():
                        net(x)
                    return n

                def onnx_step(feed: dict = feed, n: int = batch, session: Any = session) -> int:
                    session.run(None, feed)
                    return n

                count = max(2, steps if batch == 1 else steps // 4)
                timings = interleaved_timing(
                    [Variant("pytorch", torch_step), Variant("onnxruntime", onnx_step)],
                    warmup=warmup,
                    steps=count,
                )
                torch_ips = timings["pytorch"].items_per_s
                onnx_ips = timings["onnxruntime"].items_per_s
                rows.append(
                    {
                        "model": arch,
                        "task": task,
                        "input": [channels, size, size],
                        "batch": batch,
                        "threads": threads,
                        "timed_batches": count,
                        "pytorch_images_per_s": round(torch_ips, 2),
                        "onnxruntime_images_per_s": round(onnx_ips, 2),
                        "onnx_speedup": round(onnx_ips / torch_ips, 3) if torch_ips else None,
                    }
                )
                print(rows[-1], flush=True)
    return {"benchmark": "onnx_speed", "machine": machine_info(), "results": rows}


def main() -> None:
    """Parse options, run, write the JSON, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed batches at batch 1")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=1, help="threads of each backend (intra-op)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args()
    result = run(options.steps, options.warmup, tuple(options.batches), options.threads)
    path = write_result("onnx_speed.json", result, options.out)
    print("| model | batch | PyTorch img/s | onnxruntime img/s | speed-up |")
    print("|---|---|---|---|---|")
    for row in result["results"]:
        print(
            f"| {row['model']} | {row['batch']} | {row['pytorch_images_per_s']} | "
            f"{row['onnxruntime_images_per_s']} | {row['onnx_speedup']} |"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
