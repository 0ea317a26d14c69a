"""The inference defaults the command line shows, torch-free so that every `--help` states them without loading
torch."""

AUTO_CHUNK_S = 30.0  # without chunk_length_s, recordings longer than this run as windows of this length
