"""ONNX export of the encoder or any head, for ONNX Runtime (its command line: cli/export.py).

- `onnx`: the export, its checks and int8 weights. `attention`: the attention form the exporter installs.
"""
