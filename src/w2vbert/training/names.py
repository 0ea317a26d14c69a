"""The training options the command line offers, torch-free so that `w2vbert finetune --help` lists them without
loading torch. Each is checked where it is used: config.py (schedules, precisions, shardings), examples.py (bad
examples and long clips), lora.py (the default targets), tasks.py (whose table has these fine-tuning tasks)."""

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
SHARDINGS = ("ddp", "fsdp")
ON_BAD = ("skip", "fail")
LONG_CLIPS = ("skip", "crop")  # what happens to a clip longer than the batch cap
DEFAULT_TARGETS = ("linear_q", "linear_k", "linear_v", "linear_out", "intermediate_dense", "output_dense")
FINETUNING_TASKS = ("ctc", "classify", "frames", "xvector")  # the tasks of TASKS with a target column
PRETRAINING_TASK = "pretrain"
