import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import one_thread  # noqa: F401  (before numpy/torch/jax load)
import torch

# One intra-op thread: small torch calls are 3-5x slower with two on these 2-core machines, and
# the planners' own num_threads options are what the benchmarks compare.
torch.set_num_threads(1)
