"""The dtype names the command line offers, torch-free so that every `--help` lists them without loading torch.
loading/devices.py maps them to torch dtypes."""

INFERENCE_DTYPES = ("float32", "bfloat16", "float16")  # what the inference commands offer
DTYPE_CHOICES = ("auto", *INFERENCE_DTYPES)  # their --dtype: "auto" is `fastest_dtype` of the device
DTYPE_HELP = (
    "auto (default): the fastest this device runs natively, bfloat16 on a CPU with AMX / AVX512-BF16 and on a GPU, "
    "else float32 (`w2vbert info --system` shows the pick); or float32 (transformers' numbers), bfloat16, float16"
)
