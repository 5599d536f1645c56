# cython: language_level=3
"""C-level API of gpusched's placement core (compiled as gpusched._engine_c).

Cython code in another scheduler can ``cimport`` this and call ``c_place`` /
``c_release`` without creating Python objects on the hot path; see
examples/cython_embed for a worked example.

Types: node, rack, pod and row indices are int32_t (NumPy int32); watts and row
slack are int64_t (NumPy int64).  A test matches each to its dtype.
"""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint64_t
from cpython.object cimport PyObject

ctypedef int32_t index_t    # nodes, racks, pods, rows: NumPy int32
ctypedef int64_t units_t    # watts, and coefficient-millionths x watts: NumPy int64

# search() status codes (same values as gpusched._engine_py)
cdef enum:
    FOUND = 0
    NO_CAPACITY = 1
    NO_POWER = 2

# node states (same values as gpusched._engine_py); only UP nodes are open to placement
cdef enum:
    UP = 0
    DRAINING = 1
    DOWN = 2
    SPARE = 3

cdef enum:
    SPARE_RECORDS = 4        # released records an engine keeps for reuse (see below)

cdef struct SearchResult:
    int status               # FOUND, NO_CAPACITY or NO_POWER
    int cap_w                # the cap chosen, -1 when none
    index_t row              # row limiting the cap (or blocking the job), -1 if none
    index_t n_nodes          # nodes written to EngineCore.out_nodes[:n_nodes], ascending

cdef struct PodKey:          # ordering key of a candidate pod for a gang
    index_t primary          # racks needed (single pod) or -free nodes (spread)
    index_t secondary        # free nodes (single pod); unused (spread)
    index_t pod


from cpython.pythread cimport PyThread_type_lock


cdef class EngineLock:
    cdef PyThread_type_lock wakeup       # waiters sleep on it; see the class docstring
    cdef unsigned long owner             # thread ident of the holder, 0 when free
    cdef int count                       # re-entry depth, 0 when free
    cdef int waiters                     # threads asleep in enter()
    @cython.final
    cdef int enter(self) except -1
    @cython.final
    cdef void exit(self) noexcept


cdef class EngineCore:
    cdef readonly object cluster
    cdef public object _lock             # the same EngineLock, for Python-level methods
    cdef EngineLock lock
    cdef int64_t n_gpus
    cdef int cap_min_w, cap_max_w
    cdef dict _jobs                      # job id -> (Job, Placement), placement order
    cdef tuple cap_objs                  # cap_objs[w] is the int w, 0 <= w <= max(cap_max_w, G)
    cdef tuple node_tuples               # node_tuples[n] is (n,)

    # model constants
    cdef int G, gpu_idle_w, busy_step_w, cap_step_w
    cdef index_t n_nodes, n_racks, n_pods, n_rows, max_rack_nodes
    cdef Py_ssize_t n_words, n_summary

    # topology (read-only)
    cdef const index_t[::1] node_rack
    cdef const index_t[::1] rack_first   # nodes of rack r: rack_first[r]:rack_first[r+1]
    cdef const index_t[::1] rack_pod
    cdef index_t[::1] pod_racks_ptr      # racks of pod p: pod_racks[pod_racks_ptr[p]:...+1]
    cdef index_t[::1] pod_racks
    cdef const index_t[::1] rack_rows_ptr
    cdef const index_t[::1] rack_rows
    cdef const units_t[::1] rack_coef
    cdef const index_t[::1] rack_run_end # per entry: end of the run of racks alike in it

    # live state
    cdef index_t[::1] node_free          # free GPUs per node
    cdef uint64_t[::1] bits              # (G+1) bitsets: nodes with exactly f free GPUs
    cdef uint64_t[::1] summary           # one bit per non-zero word of bits
    cdef index_t[::1] rack_free_nodes    # empty nodes per rack
    cdef index_t[::1] pod_free_nodes     # empty nodes per pod
    cdef index_t[::1] pod_hist           # [pod_hist_ptr[p] + f]: racks of p with f empty
    cdef index_t[::1] pod_hist_ptr       # pod p's histogram: f = 0..its largest rack's nodes
    cdef units_t[::1] rack_power         # watts
    cdef units_t[::1] slack              # b - A·P, coefficient units (< 0: row over)
    cdef units_t[::1] limit_units        # the live limits b, coefficient units
    cdef signed char[::1] node_state     # UP, DRAINING, DOWN or SPARE per node
    cdef int64_t free_gpus_total

    # scratch, all zero between calls
    cdef units_t[::1] row_base
    cdef units_t[::1] row_per_w
    cdef index_t[::1] touched_rows
    cdef index_t[::1] rack_count
    cdef index_t[::1] touched_racks
    cdef units_t[::1] rack_delta
    cdef index_t[::1] out_nodes
    cdef index_t[::1] cand_nodes
    cdef index_t[::1] rack_order
    cdef PodKey* pod_keys
    cdef PodKey* pod_keys2
    cdef units_t[::1] row_used           # _spread_at's per-row use at the target cap
    cdef index_t[::1] used_rows          # rows with row_used != 0

    # Records (None, placement) of the last few releases, kept so that place can refill
    # one, and its Placement too if nothing else holds that (gs_take_record in
    # ext/_recycle.h).  Owned references, or NULL; next_spare is where release keeps the
    # next one.
    cdef PyObject* spare_records[SPARE_RECORDS]
    cdef int next_spare

    # ---- the C-level API (no Python objects; call with or without the GIL) ----------
    # c_search finds nodes and a cap for a job and writes the nodes, ascending, to
    # out_nodes[:result.n_nodes]; it changes nothing.  c_commit takes (sign=+1) or gives
    # back (sign=-1) gpus_per_node GPUs at cap_w on nodes.  c_place and c_release wrap
    # the two for a caller that keeps its own job table: their placements count in
    # every row and in free_gpus(), but are not in jobs() or snapshot().  The caller
    # must hold no other reference into out_nodes across calls, and must serialise its
    # calls with Python-level ones (the EngineLock, or a single thread).
    cdef SearchResult c_search(self, int gpus, int max_cap, int min_cap,
                               index_t pod) noexcept nogil
    cdef void c_commit(self, const index_t* nodes, index_t n_nodes, int gpus_per_node,
                       int cap_w, int sign) noexcept nogil
    cdef int c_place(self, int gpus, int max_cap, int min_cap, index_t pod,
                     index_t* nodes_out, index_t* n_nodes_out) noexcept nogil
    cdef void c_release(self, const index_t* nodes, index_t n_nodes, int gpus,
                        int cap_w) noexcept nogil

    # internals (declared here because every cdef method of a class with a .pxd must be),
    # in the order of ext/_engine.pyx, which is the twin's (_search_node here is
    # search_node there); the final ones are direct calls, which the C compiler may inline
    @cython.final
    cdef object read_job(self, object job, int64_t* gpus, int64_t* max_cap,
                         int64_t* min_cap)
    @cython.final
    cdef object place_unlocked(self, object job, object pod)
    @cython.final
    cdef object release_unlocked(self, object job_id)
    @cython.final
    cdef SearchResult search(self, int gpus, int max_cap, int min_cap,
                             index_t pod) noexcept nogil
    @cython.final
    cdef SearchResult search_node(self, int g, int max_cap, int min_cap,
                                  index_t pod) noexcept nogil
    @cython.final
    cdef index_t next_with_free(self, int f, index_t pos) noexcept nogil
    @cython.final
    cdef index_t next_in_pod(self, int f, index_t pod, index_t after_rack) noexcept nogil
    @cython.final
    cdef SearchResult search_pods(self, index_t k, int max_cap, int min_cap,
                                  index_t n_pods) noexcept nogil
    @cython.final
    cdef index_t racks_needed(self, index_t pod, index_t k) noexcept nogil
    @cython.final
    cdef index_t nodes_in_pod(self, index_t pod, index_t k, index_t* out) noexcept nogil
    @cython.final
    cdef index_t empty_nodes(self, index_t rack, index_t count, index_t* out) noexcept nogil
    @cython.final
    cdef SearchResult search_spread(self, index_t k, int max_cap, int min_cap) noexcept nogil
    @cython.final
    cdef bint spread_at(self, index_t k, int target, index_t m) noexcept nogil
    @cython.final
    cdef bint fits(self, const index_t* nodes, index_t n_nodes, int target,
                   index_t* n_used) noexcept nogil
    @cython.final
    cdef index_t pods_fullest_first(self) noexcept nogil
    @cython.final
    cdef void spread_over_pods(self, index_t k) noexcept nogil
    @cython.final
    cdef int snap(self, int64_t bound_w, int max_cap, int min_cap) noexcept nogil
    @cython.final
    cdef int rack_cap(self, index_t rack, int g, bint empty, int max_cap, int min_cap,
                      index_t* row_out, index_t* run_end_out) noexcept nogil
    @cython.final
    cdef int gang_cap(self, const index_t* nodes, index_t n_nodes, int max_cap, int min_cap,
                      index_t* row_out) noexcept nogil
    @cython.final
    cdef void commit(self, const index_t* nodes, index_t n_nodes, int gpus_per_node,
                     int cap_w, int sign) noexcept nogil
    @cython.final
    cdef _commit_placement(self, placement, int sign)
    @cython.final
    cdef void commit_nodes(self, object nodes, int gpus_per_node, int cap_w, int sign)
    @cython.final
    cdef void open_node(self, index_t node, int sign) noexcept nogil
    @cython.final
    cdef void bit_set(self, int f, index_t n) noexcept nogil
    @cython.final
    cdef void bit_clear(self, int f, index_t n) noexcept nogil
