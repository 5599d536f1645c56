# cython: language_level=3
"""A scheduler written in Cython drives gpusched's core through its C-level API.

It cimports gpusched._engine_c (the .pxd ships inside the package), places and
releases jobs with c_place / c_release, and keeps its own job table in C arrays: no
Python object is created per decision.  run_demo() returns what it saw so a test can
check it against the Python API.
"""

from libc.stdlib cimport free, malloc

from gpusched._engine_c cimport EngineCore, index_t


def run_demo(EngineCore core, int jobs, int gpus):
    """Place ``jobs`` jobs of ``gpus`` GPUs, then release them; return the caps and nodes."""
    cdef int per_job = gpus // 8 + 1
    cdef index_t* nodes = <index_t*> malloc(jobs * per_job * sizeof(index_t))
    cdef index_t* counts = <index_t*> malloc(jobs * sizeof(index_t))
    cdef int* caps = <int*> malloc(jobs * sizeof(int))
    cdef int j
    if nodes == NULL or counts == NULL or caps == NULL:
        free(nodes); free(counts); free(caps)
        raise MemoryError()
    try:
        with nogil:
            for j in range(jobs):
                caps[j] = core.c_place(gpus, 700, 400, -1, nodes + j * per_job, counts + j)
        placed = [(caps[j], [nodes[j * per_job + i] for i in range(counts[j])])
                  for j in range(jobs)]
        free_after_place = core.free_gpus()
        with nogil:
            for j in range(jobs):
                if caps[j] > 0:
                    core.c_release(nodes + j * per_job, counts[j], gpus, caps[j])
        return placed, free_after_place
    finally:
        free(nodes); free(counts); free(caps)
