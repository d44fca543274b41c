"""A tiny YOLO-format detector for the tests, built with onnx.helper: its
output does not depend on the picture (0 * mean(image) + constant), so the
test knows exactly what the tower must draw.

usage: make_yolo_onnx.py OUT.onnx yolo|yolo_nms

- yolo: output0 [1, 6, 3] (attributes first, as Ultralytics exports):
  cx, cy, w, h in 320 x 320 input pixels, then scores for (polyp, tool):
  a polyp at (160, 160) 64 x 32 scoring 0.9, a weaker copy of it (NMS
  removes it), and a candidate under the threshold.
- yolo_nms: output0 [1, 2, 6], NMS in the graph: x0, y0, x1, y1, score,
  class: a tool at (128, 144)-(192, 176) scoring 0.7, and one under the
  threshold.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out, kind = sys.argv[1], sys.argv[2]
if kind == "yolo":
    cands = np.array(
        [[160, 160, 64, 32, 0.9, 0.1], [162, 160, 64, 32, 0.8, 0.05], [40, 100, 20, 20, 0.1, 0.2]], dtype=np.float32
    )
    const = cands.T[None]  # [1, 6, 3]
else:
    const = np.array([[[128, 144, 192, 176, 0.7, 1], [0, 0, 1, 1, 0.1, 0]]], dtype=np.float32)  # [1, 2, 6]

nodes = [
    helper.make_node("ReduceMean", ["images"], ["m"], keepdims=1),  # [1, 1, 1, 1]
    helper.make_node("Reshape", ["m", "one_shape"], ["m3"]),  # [1, 1, 1]
    helper.make_node("Mul", ["m3", "zero"], ["z"]),
    helper.make_node("Add", ["z", "boxes"], ["output0"]),
]
graph = helper.make_graph(
    nodes,
    "tiny_yolo",
    [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])],
    [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(const.shape))],
    initializer=[
        numpy_helper.from_array(np.array([1, 1, 1], dtype=np.int64), "one_shape"),
        numpy_helper.from_array(np.zeros((1,), dtype=np.float32), "zero"),
        numpy_helper.from_array(const, "boxes"),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, out)
