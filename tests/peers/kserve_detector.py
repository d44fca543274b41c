"""A KServe (Open Inference Protocol v2) server for the shipped ONNX detector:
a test peer for the tower's remote inference backend (issue 17).

kserve's ModelServer serves one kserve.Model that runs the .onnx file through
ONNX Runtime on the CPU (1 intra-op thread). gRPC (inference.GRPCInferenceService)
and REST listen on 127.0.0.1 only, 1 worker. ModelInfer takes the input as
raw_input_contents (little-endian f32) or as contents.fp32_contents and answers
in the same form (kserve's rule: raw in, raw_output_contents out; typed in,
typed out), echoing the request id; requests run concurrently (--delay-ms is
an asyncio sleep). gRPC messages are capped at kserve's 8 MiB. Prints
`READY grpc=PORT http=PORT` on stdout once both ports accept connections
(kserve logs to stderr). SIGTERM/SIGINT stop it in about 0.5 s, exit 0; a
request still running 2 s after the signal is cancelled (UNAVAILABLE).

usage: kserve_detector.py --grpc-port P --http-port Q [--model PATH]
                          [--model-name lesion_detector] [--delay-ms N] [--garbage]
--garbage answers every request with a well-formed output full of NaN (a
broken model on the server).
Environment: none beyond the venv (.deps/venv/bin/python).
"""

import argparse
import asyncio
import sys
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

# kserve.model_server parses sys.argv at import (parse_known_args); our flags
# use hyphens, kserve's underscores, so they do not collide.
import kserve.model_server as kserve_server
import kserve.protocol.grpc.server as kserve_grpc
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput

HOST = "127.0.0.1"
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "lesion_detector.onnx"
ONNX_TO_V2 = {"tensor(float)": "FP32"}

# kserve 0.21 hard-codes its listen addresses (uvicorn host "0.0.0.0", gRPC
# "[::]:PORT") with no option to change them: rebind both to loopback.


class _LoopbackREST(kserve_server.RESTServer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host = HOST


class _LoopbackAio:
    def __getattr__(self, name):
        return getattr(grpc.aio, name)

    @staticmethod
    def server(*args, **kwargs):
        server = grpc.aio.server(*args, **kwargs)
        add = server.add_insecure_port
        server.add_insecure_port = lambda address: add(address.replace("[::]", HOST))
        return server


kserve_server.RESTServer = _LoopbackREST
kserve_grpc.aio = _LoopbackAio()


class OnnxDetector(Model):
    def __init__(self, name: str, path: Path, delay_ms: int, garbage: bool = False):
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.delay_s = delay_ms / 1000.0
        self.garbage = garbage
        self.ready = True

    @staticmethod
    def _types(args):
        return [{"name": a.name, "datatype": ONNX_TO_V2[a.type], "shape": list(a.shape)} for a in args]

    def get_input_types(self):
        return self._types(self.session.get_inputs())

    def get_output_types(self):
        return self._types(self.session.get_outputs())

    async def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        feeds = {}
        for spec in self.session.get_inputs():
            tensor = payload.get_input_by_name(spec.name)
            if tensor is None:
                raise InvalidInput(f"missing input '{spec.name}'")
            if tensor.datatype != "FP32" or list(tensor.shape) != list(spec.shape):
                raise InvalidInput(f"input '{spec.name}' must be FP32 {spec.shape}, got {tensor.datatype} {tensor.shape}")
            try:
                feeds[spec.name] = tensor.as_numpy()
            except ValueError as e:  # data length does not match the shape
                raise InvalidInput(f"input '{spec.name}': {e}")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        results = await asyncio.to_thread(self.session.run, None, feeds)
        if self.garbage:
            results = [np.full_like(value, np.nan) for value in results]
        outputs = []
        for spec, value in zip(self.session.get_outputs(), results):
            out = InferOutput(name=spec.name, shape=list(value.shape), datatype="FP32")
            out.set_data_from_numpy(value, binary_data=payload.use_binary_outputs)
            outputs.append(out)
        return InferResponse(
            response_id=payload.id,
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
        )


async def announce(grpc_port: int, http_port: int) -> None:
    """Print READY once both ports accept connections."""
    for port in (grpc_port, http_port):
        while True:
            try:
                _, writer = await asyncio.open_connection(HOST, port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
    print(f"READY grpc={grpc_port} http={http_port}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--model-name", default="lesion_detector")
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--garbage", action="store_true")
    args = parser.parse_args()

    model = OnnxDetector(args.model_name, args.model, args.delay_ms, args.garbage)
    server = ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_latency_logging=False,
        grace_period=2,
    )
    server.servers.append(announce(args.grpc_port, args.http_port))
    server.start([model])


if __name__ == "__main__":
    sys.exit(main())
