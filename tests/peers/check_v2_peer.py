"""Checks an Open Inference Protocol (KServe v2) gRPC server serving the
lesion detector against ONNX Runtime run here on the same frame: a manual
check of the test peers for the remote inference backend (issue 17).

usage: check_v2_peer.py GRPC_PORT [--model PATH] [--model-name NAME] [--n 50]
Uses the stubs of tritonclient's service.proto (package `inference`).
"""

import argparse
import statistics
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "lesion_detector.onnx"


def request(name, frame, *, raw=True, rid="", version="", datatype="FP32", shape=None, outputs=()):
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="image", datatype=datatype, shape=list(shape or frame.shape)
    )
    req = pb.ModelInferRequest(model_name=name, model_version=version, id=rid)
    if raw:
        req.raw_input_contents.append(frame.astype("<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(frame.ravel().tolist())
    req.inputs.append(tensor)
    for o in outputs:
        req.outputs.append(pb.ModelInferRequest.InferRequestedOutputTensor(name=o))
    return req


def output(resp):
    out = resp.outputs[0]
    form = "raw_output_contents" if resp.raw_output_contents else "contents.fp32_contents"
    if resp.raw_output_contents:
        value = np.frombuffer(resp.raw_output_contents[0], dtype="<f4")
    else:
        value = np.array(out.contents.fp32_contents, dtype=np.float32)
    return out, form, value.reshape(list(out.shape))


def try_call(label, fn):
    try:
        r = fn()
        print(f"{label}: OK {str(r).strip()[:200]!r}")
        return r
    except grpc.RpcError as e:
        print(f"{label}: {e.code().name} {e.details()!r}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--model-name", default="lesion_detector")
    p.add_argument("--n", type=int, default=50)
    a = p.parse_args()
    name = a.model_name

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(a.model), opts, providers=["CPUExecutionProvider"])
    frame = np.random.default_rng(17).random((1, 3, 320, 320), dtype=np.float32)
    expected = sess.run(None, {"image": frame})[0]

    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{a.port}"))
    try_call("ServerLive", lambda: stub.ServerLive(pb.ServerLiveRequest()))
    try_call("ServerReady", lambda: stub.ServerReady(pb.ServerReadyRequest()))
    try_call("ServerMetadata", lambda: stub.ServerMetadata(pb.ServerMetadataRequest()))
    try_call("ModelReady", lambda: stub.ModelReady(pb.ModelReadyRequest(name=name)))
    try_call("ModelReady version=1", lambda: stub.ModelReady(pb.ModelReadyRequest(name=name, version="1")))
    try_call("ModelReady unknown", lambda: stub.ModelReady(pb.ModelReadyRequest(name="nope")))
    try_call("ModelMetadata", lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name=name)))

    for label, kw in [
        ("raw", dict(raw=True, rid="req-raw")),
        ("typed", dict(raw=False, rid="req-typed")),
        ("raw version=1", dict(raw=True, version="1")),
        ("raw outputs=[prob_map]", dict(raw=True, outputs=["prob_map"])),
    ]:
        resp = try_call(f"ModelInfer {label}", lambda: stub.ModelInfer(request(name, frame, **kw)))
        if resp is not None:
            out, form, value = output(resp)
            print(
                f"  id={resp.id!r} model={resp.model_name!r} version={resp.model_version!r} "
                f"output={out.name} {out.datatype} {list(out.shape)} as {form}; "
                f"identical to local ORT: {np.array_equal(value, expected)} "
                f"(max |diff| {float(np.abs(value - expected).max()):.3g})"
            )

    try_call("ModelInfer datatype=fp32", lambda: stub.ModelInfer(request(name, frame, datatype="fp32")))
    try_call("ModelInfer shape [3,320,320]", lambda: stub.ModelInfer(request(name, frame, shape=[3, 320, 320])))
    try_call("ModelInfer short raw", lambda: stub.ModelInfer(request(name, frame[:, :, :160], shape=[1, 3, 320, 320])))
    try_call("ModelInfer unknown model", lambda: stub.ModelInfer(request("nope", frame)))

    for raw in (True, False):
        req = request(name, frame, raw=raw)
        stub.ModelInfer(req)
        times = []
        for _ in range(a.n):
            t = time.perf_counter()
            stub.ModelInfer(req)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        print(
            f"latency {'raw' if raw else 'typed'} ({a.n} sequential): median {statistics.median(times):.2f} ms, "
            f"p90 {times[int(0.9 * len(times)) - 1]:.2f} ms, min {times[0]:.2f} ms"
        )
    t = time.perf_counter()
    for _ in range(a.n):
        sess.run(None, {"image": frame})
    print(f"local ORT run: {(time.perf_counter() - t) * 1000 / a.n:.2f} ms per frame")


if __name__ == "__main__":
    main()
