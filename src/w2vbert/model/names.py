"""The model options the command line offers, torch-free so that every `--help` lists them without loading torch:
`QUANTIZE` (model/quantization.py), `FAIRSEQ2_KINDS`, the releases model/fairseq2.py converts, and `FRAME_MS`, in
which streaming chunk sizes are given on the command line."""

QUANTIZE = (None, "int8")
FAIRSEQ2_KINDS = ("w2v-bert", "seamless-m4t-v2")  # conformer_shaw.pt, and SeamlessM4T v2's speech encoder
FRAME_MS = 20  # one encoder frame: two stacked 10 ms fbank frames (a chunk of 32 frames is 640 ms)
