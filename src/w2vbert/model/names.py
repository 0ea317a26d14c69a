"""The model options the command line offers, torch-free so that every `--help` lists them without loading torch:
`QUANTIZE` (model/quantization.py) and `FAIRSEQ2_KINDS`, the releases model/fairseq2.py converts."""

QUANTIZE = (None, "int8")
FAIRSEQ2_KINDS = ("w2v-bert", "seamless-m4t-v2")  # conformer_shaw.pt, and SeamlessM4T v2's speech encoder
