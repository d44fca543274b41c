"""A Triton Inference Server (Open Inference Protocol v2) for the shipped ONNX
detector: a test peer for the tower's remote inference backend (issue 17).

PyTriton starts the tritonserver binary from its wheel (CPU only) and binds a
Python model `lesion_detector` (version 1) whose function runs the .onnx file
through ONNX Runtime on the CPU (1 intra-op thread), unbatched: input `image`
FP32 [1,3,320,320], output `prob_map` FP32 [1,3,80,80], always answered as
raw_output_contents. One model instance: requests run one at a time (with
--delay-ms N, four parallel requests take about 4 N). gRPC, HTTP and metrics
listen on 127.0.0.1 only. Prints `READY grpc=PORT http=PORT` on stdout once
the model is ready (Triton's own log goes to stderr); SIGTERM/SIGINT let
in-flight requests finish, stop Triton and exit 0 (about 3-5 s).

usage: triton_detector.py --grpc-port P --http-port Q --metrics-port R
                          [--model PATH] [--model-name lesion_detector] [--delay-ms N]

Environment, from a plain subprocess:
- run it with the venv's interpreter (.deps/venv/bin/python): PyTriton puts
  that interpreter's bin/ on the server's PATH for the Python backend stub.
- the stub links libpython3.11.so.1.0: LD_LIBRARY_PATH must put the venv's
  base interpreter's lib/ (sysconfig LIBDIR, e.g. ~/.pyenv/versions/3.11.7/lib)
  first. This script does so itself, and Triton inherits it. Without it the
  stub loads Debian's /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 (3.11.2)
  and the model fails to load ("'_thread.RLock' object has no attribute
  '_recursion_count'"), or finds no libpython at all.
- /dev/shm must be writable (the stub and the proxy share memory), and
  ~/.cache/pytriton/ holds a per-run workspace (removed at a clean stop).
"""

import argparse
import os
import signal
import sys
import sysconfig
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

HOST = "127.0.0.1"
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "lesion_detector.onnx"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--model-name", default="lesion_detector")
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()

    # Triton logs to the stdout it inherits: send it (and everything but the
    # READY line) to stderr, so stdout carries only READY.
    ready_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    libdir = sysconfig.get_config_var("LIBDIR")
    paths = os.environ.get("LD_LIBRARY_PATH", "").split(":")
    if libdir and libdir not in paths:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir] + [p for p in paths if p])

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    delay_s = args.delay_ms / 1000.0

    def infer(requests):
        if delay_s:
            time.sleep(delay_s)
        return [{out.name: session.run(None, {inp.name: r[inp.name]})[0]} for r in requests]

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    config = TritonConfig(
        grpc_address=HOST,
        grpc_port=args.grpc_port,
        http_address=HOST,
        http_port=args.http_port,
        metrics_address=HOST,
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
    )
    triton = Triton(config=config)
    try:
        triton.bind(
            model_name=args.model_name,
            infer_func=infer,
            inputs=[Tensor(name=inp.name, dtype=np.float32, shape=tuple(inp.shape))],
            outputs=[Tensor(name=out.name, dtype=np.float32, shape=tuple(out.shape))],
            config=ModelConfig(batching=False),
            strict=True,
        )
        triton.run()  # returns once the server and the model are ready
        print(f"READY grpc={args.grpc_port} http={args.http_port}", file=ready_out, flush=True)
        while not stop.wait(0.5):
            if not triton.is_alive():
                print("triton_detector: Triton died", file=sys.stderr)
                return 1
    finally:
        triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
