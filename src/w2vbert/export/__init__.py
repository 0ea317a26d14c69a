"""ONNX export of the encoder or any head, for ONNX Runtime.

- `onnx`: the export, its checks and int8 weights. `attention`: the attention form the exporter installs.
"""
