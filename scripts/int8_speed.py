#!/usr/bin/env python3
"""INT8 against FP32 per inference, with the noise of a shared VM taken out.

Loads the bundled FP32 and INT8 NanoDet at 1 and 2 intra-op threads (spinning
off, sequential execution, as the node does) in ONE process and runs the four
sessions in alternating rounds on the same input tensor, so a neighbour's load
that comes and goes weighs on all four alike. Prints the median per session and
the INT8 speed-up per thread count. Used for the ratio in docs/performance.md.

    python3 -m venv /tmp/venv-ort && /tmp/venv-ort/bin/pip install onnxruntime==1.32.0 numpy
    /tmp/venv-ort/bin/python scripts/int8_speed.py [--rounds 6] [--runs 15]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "fp32": ROOT / "models" / "nanodet_g_coco_416.onnx",
    "int8": ROOT / "models" / "nanodet_g_coco_416_int8.onnx",
}


def session(path: Path, threads: int) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--runs", type=int, default=15, help="runs per session per round")
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    x = np.random.RandomState(0).randn(1, 3, 416, 416).astype(np.float32)
    runs = []
    for name, path in MODELS.items():
        for threads in (1, 2):
            s = session(path, threads)
            inp = s.get_inputs()[0].name
            for _ in range(a.warmup):
                s.run(None, {inp: x})
            runs.append((name, threads, s, inp, []))
    for _ in range(a.rounds):
        for _, _, s, inp, times in runs:
            for _ in range(a.runs):
                t0 = time.perf_counter()
                s.run(None, {inp: x})
                times.append((time.perf_counter() - t0) * 1e3)
    med = {(n, t): float(np.median(v)) for n, t, _, _, v in runs}
    print(f"onnxruntime {ort.__version__}, {a.rounds} rounds x {a.runs} runs per session")
    for (n, t), m in med.items():
        print(f"{n} {t} thread(s): p50 {m:.2f} ms")
    for t in (1, 2):
        print(f"INT8 faster by {med[('fp32', t)] / med[('int8', t)]:.2f}x at {t} thread(s)")


if __name__ == "__main__":
    main()
