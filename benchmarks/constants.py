"""Names the runner and the report share (kept apart so that the report does not import the runner)."""

DEFAULT_BACKENDS = ["numpy-f32", "numpy-f64", "torch-cpu-f32", "torch-cuda-f32"]
MODES = ("train", "infer")
KNEE_FALL = 0.25    # overhead-bound while doubling the batch cuts time per sample by more than 25%
