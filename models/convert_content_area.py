"""Convert torchcontentarea's learned edge kernel to ONNX without torch.

The torchcontentarea wheel (MIT, PyPI; Budd et al., "Rapid and robust
endoscopic content area estimation", arXiv:2210.14771) ships its learned
edge detector as TorchScript (`models/kernel_3_8.pt`): a zip whose
`data.pkl` names the tensors and whose `data/<n>` files hold them as raw
little-endian float32. The network is small: three 3x3 valid convolutions
with ReLU (5 -> 8 -> 16 -> 32 channels) and a 1x1 convolution to one logit,
so a 7-row strip of the picture gives one edge score per column. This script
reads the tensors with a stub unpickler (no torch), rebuilds the network with
onnx.helper (sigmoid added at the end, as the package applies it), checks it
against a plain numpy implementation of the same convolutions, and writes
models/content_area.onnx.

usage (./x setup has the venv):
  python3 -m pip download --python-version 3.9 --only-binary=:all: --no-deps torchcontentarea==0.4.0 -d /tmp/tca
  .deps/venv/bin/python models/convert_content_area.py /tmp/tca/torchcontentarea-0.4.0-*.whl models/content_area.onnx
"""
import io
import pickle
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MEMBER = "torchcontentarea/models/kernel_3_8.pt"


class _Obj:
    def __init__(self, *args, **kwargs):
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _Unpickler(pickle.Unpickler):
    """Reads a TorchScript data.pkl: modules become plain objects, tensors
    become (storage key, shape, stride)."""

    def find_class(self, module, name):
        if name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: ("tensor", storage[2], offset, tuple(size), tuple(stride))
        if name == "OrderedDict":
            import collections

            return collections.OrderedDict
        return type(name, (_Obj,), {"__module__": module})

    def persistent_load(self, pid):
        return pid


def read_tensors(pt_bytes):
    z = zipfile.ZipFile(io.BytesIO(pt_bytes))
    root = z.namelist()[0].split("/")[0]
    tree = _Unpickler(z.open(f"{root}/data.pkl")).load()
    out = {}

    def walk(o, path):
        if isinstance(o, _Obj) and isinstance(o.state, dict):
            for k, v in o.state.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(o, tuple) and o and o[0] == "tensor":
            _, key, offset, shape, stride = o
            data = np.frombuffer(z.read(f"{root}/data/{key}"), dtype="<f4")
            n = int(np.prod(shape))
            assert offset == 0 and data.size == n, (path, offset, data.size, shape)
            out[path] = data.reshape(shape).copy()

    walk(tree, "")
    return out


def build(t):
    layers = [("layers.0.conv", True), ("layers.1.conv", True), ("layers.2.conv", True), ("out_layer", False)]
    nodes, inits, x = [], [], "strips"
    for i, (name, relu) in enumerate(layers):
        w, b = t[f"{name}.weight"], t[f"{name}.bias"]
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        y = f"c{i}"
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [y], kernel_shape=list(w.shape[2:])))
        if relu:
            nodes.append(helper.make_node("Relu", [y], [f"r{i}"]))
            y = f"r{i}"
        x = y
    nodes.append(helper.make_node("Sigmoid", [x], ["edge_score"]))
    graph = helper.make_graph(
        nodes,
        "content_area_edge_kernel",
        [helper.make_tensor_value_info("strips", TensorProto.FLOAT, ["n", 5, 7, "w"])],
        [helper.make_tensor_value_info("edge_score", TensorProto.FLOAT, ["n", 1, 1, "w_minus_6"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.doc_string = "torchcontentarea 0.4.0 kernel_3_8 (MIT), converted by models/convert_content_area.py"
    onnx.checker.check_model(model)
    return model


def numpy_forward(t, x):
    """The same network in plain numpy (valid convolutions), for parity."""

    def conv(x, w, b):
        n, c, h, wd = x.shape
        o, _, kh, kw = w.shape
        out = np.zeros((n, o, h - kh + 1, wd - kw + 1), dtype=np.float64)
        for dy in range(kh):
            for dx in range(kw):
                patch = x[:, :, dy : dy + out.shape[2], dx : dx + out.shape[3]]
                out += np.einsum("nchw,oc->nohw", patch, w[:, :, dy, dx])
        return out + b[None, :, None, None]

    for name in ["layers.0.conv", "layers.1.conv", "layers.2.conv"]:
        x = np.maximum(conv(x, t[f"{name}.weight"], t[f"{name}.bias"]), 0)
    x = conv(x, t["out_layer.weight"], t["out_layer.bias"])
    return 1 / (1 + np.exp(-x))


def main():
    wheel, out = sys.argv[1], sys.argv[2]
    with zipfile.ZipFile(wheel) as w:
        t = read_tensors(w.read(MEMBER))
    model = build(t)
    onnx.save(model, out)
    # Parity: ONNX Runtime (if present) or the ONNX reference evaluator
    # against numpy, on random strips.
    x = np.random.default_rng(0).normal(size=(4, 5, 7, 40)).astype(np.float32)
    try:
        import onnxruntime as ort

        got = ort.InferenceSession(out).run(None, {"strips": x})[0]
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        got = ReferenceEvaluator(model).run(None, {"strips": x})[0]
    want = numpy_forward(t, x.astype(np.float64))
    err = float(np.abs(got - want).max())
    print(f"wrote {out}: output {got.shape}, max |onnx - numpy| = {err:.2e}")
    assert got.shape == (4, 1, 1, 34) and err < 1e-5


if __name__ == "__main__":
    main()
