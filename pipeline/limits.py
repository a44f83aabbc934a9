"""Default bounds on what one video may cost a worker, shared by `features` and `predict`.
The per-video caps on pixels and decoded bytes are decode's (`stages/decode.py`)."""

# A video's reading and computing takes 2.6 s on one core with the default profile (18 s for
# the 7 videos of BENCHMARKS.md), about a minute with dlib's CNN detector; ten minutes leaves
# any real video on a busy node far inside the limit, and keeps a hostile one from holding a
# worker longer.
VIDEO_TIMEOUT_S = 600.0

# Each local worker process may use this much before its nanny restarts it: a 4K clip peaks
# under 2 GB (README, Running on a cluster), and one file must not take the machine's memory.
WORKER_MEMORY = "3GB"
