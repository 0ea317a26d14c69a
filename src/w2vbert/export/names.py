"""The export options the command line offers, torch-free so that `w2vbert export --help` lists them without loading
torch: each `--dtype` with the torch dtype it stands for (export/onnx.py), and the quantizations."""

EXPORT_DTYPE_NAMES = {"fp32": "float32", "fp16": "float16"}  # --dtype -> loading.devices.DTYPES name
QUANTIZATIONS = ("int8",)
