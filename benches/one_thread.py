"""Imported first by the MCTS benchmarks (before numpy, torch or jax load): every contender runs
on one thread unless a benchmark asks for more.

numpy's bundled OpenBLAS otherwise keeps a thread spinning on the other core for a while after
each call (the numpy baseline makes many), which slowed wmfast's single-threaded search in the
same process by 1.5x on the 2-core machine; jax's CPU backend would use every core for mctx.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
