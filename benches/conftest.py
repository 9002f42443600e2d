import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
# One intra-op thread: small torch calls are 3-5x slower with two on these 2-core machines, and
# the planners' own num_threads options are what the benchmarks compare.
torch.set_num_threads(1)
