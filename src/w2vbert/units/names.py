"""The defaults and choices of `w2vbert units`, torch-free so that its `--help` states them without loading torch."""

DEFAULT_K = 500  # units: the common size for HuBERT-style units (and the reference size)
DEFAULT_MAX_FRAMES = 1_000_000  # frames in the k-means sample (20 ms each: about 5.6 hours of audio)
DEFAULT_N_INIT = 3  # k-means restarts (Lloyd: fits; mini-batch: initialisations), the best kept
DEFAULT_SEED = 0
ALGORITHMS = ("lloyd", "minibatch")  # full passes over the sample, or sklearn MiniBatchKMeans-style steps
DEFAULT_ALGORITHM = "minibatch"  # what fairseq's HuBERT speech2unit recipe fits with
