# cython: language_level=3
"""gpusched's placement core in Cython: the same algorithm as gpusched/_engine_py.py.

Read the docstring of ``_engine_py`` first: it states the algorithm once, and this
file follows it function by function so the two can be read side by side:

- the sections come in the twin's order (public hot path, search, the cap a candidate
  allows, state changes, read-only views), and inside each the functions do too;
- the twin's private method ``_name`` is the cdef method ``name`` here (``_search_node``
  is ``search_node``, ``_commit`` is ``commit``); where the twin's method is called from
  Python (``_search``, ``_insert``, ``_replace``, ``_reset``, ``_index_state``) the def
  here has the very same name and signature;
- what only the compiled core has is marked "Cython only": the bitsets that stand in
  for the twin's sorted free lists, ``place_unlocked`` / ``release_unlocked`` (place
  and release minus the lock), ``_commit_placement``, and the C-level API, whose
  methods carry a ``c_`` prefix (``c_search``, ``c_commit``, ``c_place``,
  ``c_release``: virtual entry points for other Cython modules, see _engine_c.pxd);
- the CPython record recycling lives in ``_recycle.h`` and ``_job_slots.h``, and the
  lock in ``_lock.pxi``.

Everything the hot path touches is a typed memoryview over NumPy arrays owned by the
EngineCore; no Python object is created inside a search.

Invariants kept between calls (checked by the stateful tests on both twins):
- node n is set in bitset f iff node_free[n] == f and n is open, for f in 1..G;
- summary bit w of bitset f is set iff word w of bitset f is non-zero;
- rack_free_nodes[r] = #{n in rack r open : node_free[n] == G}; pod_free_nodes likewise;
- pod_hist[pod_hist_ptr[p] + f] = #{r in pod p : rack_free_nodes[r] == f}, for f from 0
  to the nodes of pod p's largest rack (so the histograms take racks + nodes entries in
  all, whatever the shape of the site);
- rack_power[r] = sum of node powers of rack r (integer watts);
- slack = b_units - A_units · rack_power >= 0 (no row is ever broken);
- node n is open (counted in the bitsets and the empty-node counts) iff
  node_state[n] == UP; see "Node states" in the twin's docstring;
- every scratch array is all zero.
"""

cimport cython
from libc.stdlib cimport free, malloc, qsort
from libc.stdint cimport int32_t, int64_t, uint64_t
from cpython.dict cimport PyDict_SetDefault
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF

import numpy as np

from gpusched._checks import (check_job, check_pod, duplicate_in_batch, duplicate_job,
                              gpus_per_node_for, released_twice, unknown_job)
from gpusched.job import Job, Placement

cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static inline int gs_ctz64(unsigned long long x) {
        unsigned long i; _BitScanForward64(&i, x); return (int)i;
    }
    #else
    static inline int gs_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    #endif
    """
    int gs_ctz64(unsigned long long x) noexcept nogil

cdef extern from "_recycle.h":
    # released (job, placement) records kept for reuse; see ext/_recycle.h
    object gs_take_record(PyObject** spares, int n_spares, object type, object job,
                          PyObject** fields)
    void gs_keep_record(PyObject** spares, int n_spares, int* next, object record)

cdef extern from "_job_slots.h":
    Py_ssize_t gs_slot_offset(object descr) except? -2
    PyObject* gs_slot(object obj, Py_ssize_t offset) noexcept

cdef extern from *:
    """
    #ifndef GPUSCHED_DEBUG
    #define GPUSCHED_DEBUG 0
    #endif
    """
    int GPUSCHED_DEBUG

#: True in a GPUSCHED_DEBUG_BUILD=1 build (bounds and wrap-around checks on), so CI can
#: tell that the build it fuzzes really is the checked one.
BOUNDS_CHECKED = bool(GPUSCHED_DEBUG)

# Offsets of Job's slots (id, gpus, max_cap_w, min_cap_w), so place() reads a Job's
# fields as four loads instead of four getattr calls (an 8-GPU place+release pair went
# from 0.53 to 0.42 us with it).  Used only for objects whose type is exactly Job;
# anything else goes through getattr.
cdef Py_ssize_t JOB_ID_AT = gs_slot_offset(vars(Job).get("id"))
cdef Py_ssize_t JOB_GPUS_AT = gs_slot_offset(vars(Job).get("gpus"))
cdef Py_ssize_t JOB_MAX_CAP_AT = gs_slot_offset(vars(Job).get("max_cap_w"))
cdef Py_ssize_t JOB_MIN_CAP_AT = gs_slot_offset(vars(Job).get("min_cap_w"))
cdef bint JOB_SLOTS_KNOWN = min(JOB_ID_AT, JOB_GPUS_AT, JOB_MAX_CAP_AT, JOB_MIN_CAP_AT) >= 0

# search_pods picks this many next-best pods by a scan before it sorts the rest
cdef index_t SELECT_FIRST = 4

cdef uint64_t ONE = 1
cdef uint64_t ALL = <uint64_t>0xFFFFFFFFFFFFFFFF


# ======================================================================================
# Orderings (qsort comparators: total orders, so both twins break ties the same way)
# ======================================================================================

cdef int cmp_pod_key(const void* a, const void* b) noexcept nogil:
    cdef const PodKey* x = <const PodKey*> a
    cdef const PodKey* y = <const PodKey*> b
    if x.primary != y.primary:
        return -1 if x.primary < y.primary else 1
    if x.secondary != y.secondary:
        return -1 if x.secondary < y.secondary else 1
    return -1 if x.pod < y.pod else (1 if x.pod > y.pod else 0)


cdef int cmp_index(const void* a, const void* b) noexcept nogil:
    cdef index_t x = (<const index_t*> a)[0]
    cdef index_t y = (<const index_t*> b)[0]
    return -1 if x < y else (1 if x > y else 0)


include "_lock.pxi"


cdef class EngineCore:
    """Live state of one cluster, with place and release (Cython)."""

    backend = "cython"

    def __cinit__(self, *args, **kwargs):
        cdef int i
        for i in range(SPARE_RECORDS):
            self.spare_records[i] = NULL
        self.next_spare = 0
        self.pod_keys = NULL
        self.pod_keys2 = NULL

    def __dealloc__(self):
        cdef int i
        for i in range(SPARE_RECORDS):
            Py_XDECREF(self.spare_records[i])
            self.spare_records[i] = NULL
        free(self.pod_keys)
        free(self.pod_keys2)

    def __init__(self, cluster):
        self.cluster = cluster
        power = cluster.power
        self.G = power.gpus_per_node
        self.gpu_idle_w = power.gpu_idle_w
        self.busy_step_w = power.busy_step_w
        self.cap_step_w = power.cap_step_w
        self.n_nodes = cluster.num_nodes
        self.n_racks = cluster.num_racks
        self.n_pods = cluster.num_pods
        self.n_rows = cluster.constraints.num_rows
        self.max_rack_nodes = int(cluster.rack_nodes.max())
        pod_max = np.zeros(self.n_pods, dtype=np.int64)
        np.maximum.at(pod_max, cluster.rack_pod, cluster.rack_nodes)
        self.pod_hist_ptr = np.concatenate([[0], np.cumsum(pod_max + 1)]).astype(np.int32)
        self.node_rack = cluster.node_rack
        self.rack_first = cluster.rack_first_node
        self.rack_pod = cluster.rack_pod
        order = np.argsort(cluster.rack_pod, kind="stable").astype(np.int32)
        self.pod_racks = order
        self.pod_racks_ptr = np.concatenate(
            [[0], np.cumsum(np.bincount(cluster.rack_pod, minlength=self.n_pods))]
        ).astype(np.int32)
        c = cluster.constraints
        self.rack_rows_ptr = c.rack_rows_indptr
        self.rack_rows = c.rack_rows_index
        self.rack_coef = c.rack_rows_coef_units
        self.rack_run_end = c.rack_rows_run_end
        self.n_words = (self.n_nodes + 63) // 64
        self.n_summary = (self.n_words + 63) // 64
        self.row_base = np.zeros(self.n_rows, dtype=np.int64)
        self.row_per_w = np.zeros(self.n_rows, dtype=np.int64)
        self.touched_rows = np.zeros(self.n_rows, dtype=np.int32)
        self.rack_count = np.zeros(self.n_racks, dtype=np.int32)
        self.touched_racks = np.zeros(self.n_racks, dtype=np.int32)
        self.rack_delta = np.zeros(self.n_racks, dtype=np.int64)
        self.out_nodes = np.zeros(self.n_nodes, dtype=np.int32)
        self.cand_nodes = np.zeros(self.n_nodes, dtype=np.int32)
        self.rack_order = np.zeros(self.n_racks, dtype=np.int32)
        self.row_used = np.zeros(self.n_rows, dtype=np.int64)
        self.used_rows = np.zeros(self.n_rows, dtype=np.int32)
        free(self.pod_keys)
        free(self.pod_keys2)
        self.pod_keys = <PodKey*> malloc(max(1, self.n_pods) * sizeof(PodKey))
        self.pod_keys2 = <PodKey*> malloc(max(1, self.n_pods) * sizeof(PodKey))
        if self.pod_keys == NULL or self.pod_keys2 == NULL:
            raise MemoryError()
        self.lock = EngineLock()
        self._lock = self.lock
        self.n_gpus = cluster.num_gpus
        self.cap_min_w = power.cap_min_w
        self.cap_max_w = power.cap_max_w
        # int objects for every cap and 1-tuples for every node, made once and shared by
        # the placements (both immutable): an 8-GPU place then allocates only its
        # Placement and its record (an 8-GPU pair went from 0.42 to 0.38 us with it).
        # They serve as caps and as GPUs per node, so they run to the larger of the two:
        # the spec does not order cap_max_w and gpus_per_node.
        self.cap_objs = tuple(range(max(self.cap_max_w, self.G) + 1))
        self.node_tuples = tuple([(n,) for n in range(self.n_nodes)])
        self._reset()

    def _reset(self):
        """Empty the engine: every GPU free, every job gone."""
        cluster = self.cluster
        cdef index_t n, G = self.G
        self.node_free = np.full(self.n_nodes, G, dtype=np.int32)
        self.bits = np.zeros((G + 1) * self.n_words, dtype=np.uint64)
        self.summary = np.zeros((G + 1) * self.n_summary, dtype=np.uint64)
        for n in range(self.n_nodes):
            self.bit_set(G, n)
        self.rack_free_nodes = cluster.rack_nodes.copy()
        self.pod_free_nodes = cluster.pod_nodes.copy()
        hist = np.zeros(self.pod_hist_ptr[self.n_pods], dtype=np.int32)
        np.add.at(hist, np.asarray(self.pod_hist_ptr)[cluster.rack_pod] + cluster.rack_nodes, 1)
        self.pod_hist = hist
        self.rack_power = cluster.idle_rack_power_w.copy()
        c = cluster.constraints
        self.slack = (c.b_units - c.load_units(cluster.idle_rack_power_w)).astype(np.int64)
        self.free_gpus_total = cluster.num_gpus
        self._jobs = {}
        self.node_state = np.zeros(self.n_nodes, dtype=np.int8)
        self.limit_units = c.b_units.astype(np.int64)

    # ==================================================================================
    # Public hot path
    # ==================================================================================

    # place and release are plain methods, not cyfunctions (binding=False): the call
    # skips a bound-method object and its argument shuffle, which took 0.03 us of an
    # 8-GPU place+release pair (0.34 us).
    @cython.binding(False)
    @cython.embedsignature.format("clinic")  # so inspect.signature still reads it
    def place(self, job, pod=None):
        """Place ``job`` (inside ``pod`` if given) at the highest feasible cap, or None."""
        self.lock.enter()
        try:
            return self.place_unlocked(job, pod)
        finally:
            self.lock.exit()

    @cython.final
    cdef object read_job(self, object job, int64_t* gpus, int64_t* max_cap,
                         int64_t* min_cap):
        """Check a job as check_job does (less the duplicate id) and return its id, with
        its numbers in gpus, max_cap and min_cap.  (Cython only.)"""
        cdef PyObject* id_slot = NULL
        cdef PyObject* gpus_slot = NULL
        cdef PyObject* max_slot = NULL
        cdef PyObject* min_slot = NULL
        cdef int overflow, too_big
        if type(job) is Job and JOB_SLOTS_KNOWN:
            id_slot = gs_slot(job, JOB_ID_AT)
            gpus_slot = gs_slot(job, JOB_GPUS_AT)
            max_slot = gs_slot(job, JOB_MAX_CAP_AT)
            min_slot = gs_slot(job, JOB_MIN_CAP_AT)
        if id_slot != NULL and gpus_slot != NULL and max_slot != NULL and min_slot != NULL:
            job_id = <object>id_slot
            gpus_obj = <object>gpus_slot
            max_obj = <object>max_slot
            min_obj = <object>min_slot
        else:
            # a subclass (check_job reads each field once and returns the values it
            # checked), or a Job whose __init__ never ran (check_job's getattr raises)
            job_id, gpus_obj, max_obj, min_obj = check_job(self.cluster, job, ())
        # Exact types (Job makes them so): a str subclass could run its own __eq__ and
        # __hash__ inside the job table's lookups.  An int beyond 64 bits sets `overflow`
        # instead of raising (no try block on the hot path); any such value is outside
        # every valid range, so check_job raises.
        if (type(job_id) is not str or type(gpus_obj) is not int or type(max_obj) is not int
                or type(min_obj) is not int):
            check_job(self.cluster, job, ())  # raises the precise error
        gpus[0] = PyLong_AsLongLongAndOverflow(gpus_obj, &overflow)
        too_big = overflow
        max_cap[0] = PyLong_AsLongLongAndOverflow(max_obj, &overflow)
        too_big |= overflow
        min_cap[0] = PyLong_AsLongLongAndOverflow(min_obj, &overflow)
        too_big |= overflow
        if (too_big or gpus[0] < 1 or gpus[0] > self.n_gpus
                or (gpus[0] > self.G and gpus[0] % self.G) or min_cap[0] > max_cap[0]
                or min_cap[0] < self.cap_min_w or max_cap[0] > self.cap_max_w):
            check_job(self.cluster, job, ())  # raises the precise error
        return job_id

    @cython.final
    cdef object place_unlocked(self, object job, object pod):
        """place() without the lock: validate, search, commit, record."""
        cdef SearchResult res
        cdef index_t pod_index = -1
        cdef int64_t gpus, max_cap, min_cap
        cdef int gpn
        cdef index_t i, node
        cdef index_t* gang = NULL
        cdef index_t* taken
        cdef PyObject* fields[4]
        job_id = self.read_job(job, &gpus, &max_cap, &min_cap)
        # A duplicate id is caught by the insert at the end (one dict lookup, not two),
        # or before it wherever another outcome would come first, as in check_job.
        if pod is not None:
            if job_id in self._jobs:
                raise duplicate_job(job_id)
            pod_index = check_pod(self.cluster, pod)
        if gpus > self.G:
            # gangs search longer than a GIL hand-off costs: let other threads run (they
            # wait for the engine lock before they touch the state)
            with nogil:
                res = self.search(<int>gpus, <int>max_cap, <int>min_cap, pod_index)
        else:
            res = self.search(<int>gpus, <int>max_cap, <int>min_cap, pod_index)
        if res.status != FOUND:
            if job_id in self._jobs:
                raise duplicate_job(job_id)
            return None
        gpn = <int>gpus if gpus <= self.G else self.G
        # Commit at once, before any Python object is made: making one may run the
        # garbage collector, and so a finaliser, whose place must find these nodes
        # taken.  out_nodes is scratch that such a place overwrites: keep a copy.
        if res.n_nodes == 1:
            node = self.out_nodes[0]
            taken = &node
        else:
            gang = <index_t*> malloc(res.n_nodes * sizeof(index_t))
            if gang == NULL:
                raise MemoryError()
            for i in range(res.n_nodes):
                gang[i] = self.out_nodes[i]
            taken = gang
        self.commit(taken, res.n_nodes, gpn, res.cap_w, 1)
        try:
            if res.n_nodes == 1:
                nodes = self.node_tuples[node]
            else:
                nodes = tuple([gang[i] for i in range(res.n_nodes)])
            cap_obj = self.cap_objs[res.cap_w]
            gpn_obj = self.cap_objs[gpn]  # cap_objs runs to max(cap_max_w, G)
            fields[0] = <PyObject*>job_id
            fields[1] = <PyObject*>nodes
            fields[2] = <PyObject*>gpn_obj
            fields[3] = <PyObject*>cap_obj
            # a released record and its Placement, refilled if no one else holds them:
            # an 8-GPU place+release pair went from 0.31 to 0.24 us with it
            entry = gs_take_record(self.spare_records, SPARE_RECORDS, Placement, job, fields)
            if PyDict_SetDefault(self._jobs, job_id, entry) != <PyObject*>entry:
                raise duplicate_job(job_id)
        except BaseException:
            self.commit(taken, res.n_nodes, gpn, res.cap_w, -1)  # the id was taken: undo
            free(gang)
            raise
        free(gang)
        return (<tuple>entry)[1]

    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def release(self, job_id):
        """Free exactly what ``job_id`` holds; returns its placement."""
        self.lock.enter()
        try:
            return self.release_unlocked(job_id)
        finally:
            self.lock.exit()

    @cython.final
    cdef object release_unlocked(self, object job_id):
        # every key is exactly a str (Job checks), so anything else, a str subclass with
        # its own __eq__ or __hash__ too, is unknown and never hashed; and pop with a
        # default raises nothing, so the hot path needs no try block
        if type(job_id) is not str:
            raise unknown_job(job_id)
        entry = self._jobs.pop(job_id, None)
        if entry is None:
            raise unknown_job(job_id)
        placement = (<tuple>entry)[1]
        self._commit_placement(placement, -1)
        gs_keep_record(self.spare_records, SPARE_RECORDS, &self.next_spare, entry)
        return placement

    def place_many(self, jobs, pod=None):
        """``[place(j, pod) for j in jobs]`` under one lock acquisition, looped in C.

        The whole batch is checked first (every job, the pod, no id twice), so a bad
        batch raises the error of its first bad job and places nothing.
        """
        cdef int64_t gpus, max_cap, min_cap
        out = []
        self.lock.enter()
        try:
            batch = list(jobs)
            seen = set()
            for job in batch:
                job_id = self.read_job(job, &gpus, &max_cap, &min_cap)
                if job_id in self._jobs:
                    raise duplicate_job(job_id)
                if job_id in seen:
                    raise duplicate_in_batch(job_id)
                seen.add(job_id)
            if pod is not None:
                check_pod(self.cluster, pod)
            try:
                for job in batch:
                    out.append(self.place_unlocked(job, pod))
            except BaseException:  # not reached unless a finaliser interferes: undo
                for placement in reversed(out):
                    if placement is not None:
                        self.release_unlocked((<tuple>placement)[0])
                raise
        finally:
            self.lock.exit()
        return out

    def release_many(self, job_ids):
        """``[release(i) for i in job_ids]`` under one lock acquisition, looped in C.

        Every id is checked first (placed, and not twice), so a bad batch raises the
        error of its first bad id and releases nothing.
        """
        out = []
        self.lock.enter()
        try:
            batch = list(job_ids)
            seen = set()
            for job_id in batch:
                if type(job_id) is not str or job_id not in self._jobs:
                    raise unknown_job(job_id)
                if job_id in seen:
                    raise released_twice(job_id)
                seen.add(job_id)
            for job_id in batch:
                out.append(self.release_unlocked(job_id))
        finally:
            self.lock.exit()
        return out

    # ==================================================================================
    # Search
    # ==================================================================================

    def _search(self, int gpus, int max_cap, int min_cap, index_t pod):
        """(status, cap_w, nodes, row) as in the Python twin; changes nothing."""
        cdef SearchResult res = self.search(gpus, max_cap, min_cap, pod)
        return (res.status, res.cap_w, [self.out_nodes[i] for i in range(res.n_nodes)],
                res.row)

    @cython.final
    cdef SearchResult search(self, int gpus, int max_cap, int min_cap,
                             index_t pod) noexcept nogil:
        """Where a job of ``gpus`` GPUs goes and at which cap; nodes into out_nodes.

        Final (a direct call the C compiler may inline), as is every internal method on
        the hot path; the c_ methods are the virtual entry points of the C API.
        """
        cdef SearchResult res
        cdef index_t k, p, n_eligible = 0
        cdef int64_t total_free = 0
        if gpus <= self.G:
            return self.search_node(gpus, max_cap, min_cap, pod)
        k = gpus // self.G
        if pod >= 0:
            if self.pod_free_nodes[pod] < k:
                res.status = NO_CAPACITY
                res.cap_w = -1
                res.row = -1
                res.n_nodes = 0
                return res
            self.pod_keys[0].pod = pod
            return self.search_pods(k, max_cap, min_cap, 1)
        for p in range(self.n_pods):
            total_free += self.pod_free_nodes[p]
            if self.pod_free_nodes[p] >= k:
                self.pod_keys[n_eligible].pod = p
                n_eligible += 1
        if n_eligible:
            return self.search_pods(k, max_cap, min_cap, n_eligible)
        if total_free < k:
            res.n_nodes = 0
            res.status = NO_CAPACITY
            res.cap_w = -1
            res.row = -1
            return res
        return self.search_spread(k, max_cap, min_cap)

    @cython.final
    cdef SearchResult search_node(self, int g, int max_cap, int min_cap,
                                  index_t pod) noexcept nogil:
        cdef SearchResult res
        cdef int f, cap, best_cap = -1
        cdef index_t n, r, i, row, run_end, best_node = -1, best_row = -1, first_row = -2
        cdef bint empty
        for f in range(g, self.G + 1):
            empty = f == self.G
            if pod >= 0:
                n = self.next_in_pod(f, pod, -1)
            else:
                n = self.next_with_free(f, 0)
            while n >= 0:
                r = self.node_rack[n]
                cap = self.rack_cap(r, g, empty, max_cap, min_cap, &row, &run_end)
                if first_row == -2:
                    first_row = row
                if cap > best_cap:
                    best_cap = cap
                    best_node = n
                    best_row = row
                    if cap == max_cap:
                        break
                if pod >= 0:
                    n = self.next_in_pod(f, pod, r)
                else:
                    # The rest of this rack fits the same way, so skip it.  And row `row`
                    # holds every rack up to run_end at `cap` or below, no better than the
                    # best so far: skip those too (they cannot win, ties go to the first).
                    n = self.next_with_free(f, self.rack_first[run_end if run_end > r + 1
                                                         else r + 1])
            if best_cap == max_cap:
                break
        res.row = best_row
        res.cap_w = best_cap
        if best_node < 0:
            res.n_nodes = 0
            res.status = NO_CAPACITY if first_row == -2 else NO_POWER
            res.row = -1 if first_row == -2 else first_row
            return res
        res.status = FOUND
        res.n_nodes = 1
        self.out_nodes[0] = best_node
        return res

    @cython.final
    cdef index_t next_with_free(self, int f, index_t pos) noexcept nogil:
        """Lowest node >= pos with exactly f free GPUs, or -1.

        Python: ``nodes[bisect_left(nodes, pos)]`` on the sorted list of such nodes.
        """
        if pos >= self.n_nodes:
            return -1
        cdef Py_ssize_t base = f * self.n_words, sbase = f * self.n_summary
        cdef Py_ssize_t w = pos >> 6, s
        cdef uint64_t word = self.bits[base + w] & (ALL << (pos & 63))
        if word:
            return <index_t>((w << 6) + gs_ctz64(word))
        w += 1
        if w >= self.n_words:
            return -1
        s = w >> 6
        word = self.summary[sbase + s] & (ALL << (w & 63))
        while word == 0:
            s += 1
            if s >= self.n_summary:
                return -1
            word = self.summary[sbase + s]
        w = (s << 6) + gs_ctz64(word)
        return <index_t>((w << 6) + gs_ctz64(self.bits[base + w]))

    @cython.final
    cdef index_t next_in_pod(self, int f, index_t pod, index_t after_rack) noexcept nogil:
        """First node with exactly f free GPUs in the next rack of ``pod`` after after_rack."""
        cdef index_t i, r, n
        for i in range(self.pod_racks_ptr[pod], self.pod_racks_ptr[pod + 1]):
            r = self.pod_racks[i]
            if r <= after_rack:
                continue
            for n in range(self.rack_first[r], self.rack_first[r + 1]):
                if self.node_free[n] == f and self.node_state[n] == UP:
                    return n
        return -1

    @cython.final
    cdef SearchResult search_pods(self, index_t k, int max_cap, int min_cap,
                                  index_t n_pods) noexcept nogil:
        """Best single pod for k whole nodes among pod_keys[:n_pods] (>= k free nodes)."""
        cdef SearchResult res
        cdef index_t i, p, row, best_row, first_row, best_i = 0
        cdef int cap, best_cap
        for i in range(n_pods):
            p = self.pod_keys[i].pod
            self.pod_keys[i].primary = self.racks_needed(p, k)
            self.pod_keys[i].secondary = self.pod_free_nodes[p]
        # the first candidate decides most calls; rank the rest only when it falls short
        for i in range(1, n_pods):
            if cmp_pod_key(&self.pod_keys[i], &self.pod_keys[best_i]) < 0:
                best_i = i
        self.pod_keys[0], self.pod_keys[best_i] = self.pod_keys[best_i], self.pod_keys[0]
        self.nodes_in_pod(self.pod_keys[0].pod, k, &self.cand_nodes[0])
        best_cap = self.gang_cap(&self.cand_nodes[0], k, max_cap, min_cap, &best_row)
        first_row = best_row
        for i in range(k):
            self.out_nodes[i] = self.cand_nodes[i]
        if best_cap != max_cap and n_pods > 1:
            for i in range(1, n_pods):
                # Visit the other pods best first.  Most searches settle within a pod or
                # two, so the next pod is picked by a scan for the first few (a selection
                # sort), and the rest are sorted only if the search goes on: the same
                # order as sorting them all up front, which took about 60% of a 64-GPU
                # gang's place+release on the 30%-loaded colossus-100k.
                if i <= SELECT_FIRST:
                    best_i = i
                    for p in range(i + 1, n_pods):
                        if cmp_pod_key(&self.pod_keys[p], &self.pod_keys[best_i]) < 0:
                            best_i = p
                    self.pod_keys[i], self.pod_keys[best_i] = (self.pod_keys[best_i],
                                                               self.pod_keys[i])
                elif i == SELECT_FIRST + 1:
                    qsort(&self.pod_keys[i], n_pods - i, sizeof(PodKey), cmp_pod_key)
                self.nodes_in_pod(self.pod_keys[i].pod, k, &self.cand_nodes[0])
                cap = self.gang_cap(&self.cand_nodes[0], k, max_cap, min_cap, &row)
                if cap > best_cap:
                    best_cap = cap
                    best_row = row
                    for p in range(k):
                        self.out_nodes[p] = self.cand_nodes[p]
                    if cap == max_cap:
                        break
        res.cap_w = best_cap
        if best_cap < 0:
            res.status = NO_POWER
            res.row = first_row
            res.n_nodes = 0
            return res
        res.status = FOUND
        res.row = best_row
        res.n_nodes = k
        qsort(&self.out_nodes[0], k, sizeof(index_t), cmp_index)
        return res

    @cython.final
    cdef index_t racks_needed(self, index_t pod, index_t k) noexcept nogil:
        """Fewest racks of ``pod`` whose empty nodes add up to k (largest racks first)."""
        cdef Py_ssize_t base = self.pod_hist_ptr[pod]
        cdef index_t f, count, racks = 0
        for f in range(self.pod_hist_ptr[pod + 1] - base - 1, 0, -1):
            count = self.pod_hist[base + f]
            if <int64_t>count * f >= k:
                return racks + (k + f - 1) // f
            racks += count
            k -= count * f
        return racks  # not reached: callers ask only pods with >= k empty nodes

    @cython.final
    cdef index_t nodes_in_pod(self, index_t pod, index_t k, index_t* out) noexcept nogil:
        """k empty nodes of ``pod`` into out: fewest racks, the remainder best fit."""
        cdef index_t i, j, r, m = 0, taken = 0, last = -1, free_r
        # racks with empty nodes by (empty nodes descending, index): insertion sort,
        # pods hold a handful of racks
        for i in range(self.pod_racks_ptr[pod], self.pod_racks_ptr[pod + 1]):
            r = self.pod_racks[i]
            free_r = self.rack_free_nodes[r]
            if free_r == 0:
                continue
            j = m
            while j > 0 and (self.rack_free_nodes[self.rack_order[j - 1]] < free_r):
                self.rack_order[j] = self.rack_order[j - 1]
                j -= 1
            self.rack_order[j] = r
            m += 1
        i = 0
        while k - taken > self.rack_free_nodes[self.rack_order[i]]:
            taken += self.empty_nodes(self.rack_order[i],
                                      self.rack_free_nodes[self.rack_order[i]], out + taken)
            i += 1
        # best fit for the remainder among the racks not taken whole
        for j in range(i, m):
            r = self.rack_order[j]
            free_r = self.rack_free_nodes[r]
            if free_r >= k - taken and (last < 0 or free_r < self.rack_free_nodes[last]
                                        or (free_r == self.rack_free_nodes[last] and r < last)):
                last = r
        taken += self.empty_nodes(last, k - taken, out + taken)
        return taken

    @cython.final
    cdef index_t empty_nodes(self, index_t rack, index_t count,
                                    index_t* out) noexcept nogil:
        """The ``count`` lowest-index empty open nodes of ``rack`` into out."""
        cdef index_t n, got = 0
        for n in range(self.rack_first[rack], self.rack_first[rack + 1]):
            if got == count:
                break
            if self.node_free[n] == self.G and self.node_state[n] == UP:
                out[got] = n
                got += 1
        return got

    @cython.final
    cdef SearchResult search_spread(self, index_t k, int max_cap, int min_cap) noexcept nogil:
        """k whole nodes over several pods at the highest target cap the greedy meets.

        Python twin: ``_search_spread``.  Pods by (free nodes descending, index) are taken
        whole unless that breaks a row at the target; the remainder best fit.
        """
        cdef SearchResult res
        cdef index_t m = self.pods_fullest_first()
        cdef int target = max_cap
        while True:
            if self.spread_at(k, target, m):
                res.cap_w = self.gang_cap(&self.out_nodes[0], k, max_cap, min_cap, &res.row)
                res.status = FOUND
                res.n_nodes = k
                qsort(&self.out_nodes[0], k, sizeof(index_t), cmp_index)
                return res
            if target == min_cap:
                break
            target = target - self.cap_step_w if target - self.cap_step_w > min_cap else min_cap
        # nothing meets even min_cap; explain with the plain spread's binding row
        self.spread_over_pods(k)
        self.gang_cap(&self.out_nodes[0], k, max_cap, min_cap, &res.row)
        res.status = NO_POWER
        res.cap_w = -1
        res.n_nodes = 0
        return res

    @cython.final
    cdef bint spread_at(self, index_t k, int target, index_t m) noexcept nogil:
        """Greedy over pod_keys[:m] at cap ``target``; nodes into out_nodes[:k] if met."""
        cdef index_t i, j, p, q, r, need, got, n_used = 0, m2 = 0, taken = 0
        cdef bint ok = False
        for i in range(m):
            need = k - taken
            p = self.pod_keys[i].pod
            if self.pod_free_nodes[p] <= need:
                got = 0
                for j in range(self.pod_racks_ptr[p], self.pod_racks_ptr[p + 1]):
                    r = self.pod_racks[j]
                    got += self.empty_nodes(r, self.rack_free_nodes[r],
                                            &self.out_nodes[taken + got])
                if self.fits(&self.out_nodes[taken], got, target, &n_used):
                    taken += got
                    if taken == k:
                        ok = True
                        break
                continue
            # the remainder: best fit among the pods not yet passed over
            for j in range(i, m):
                self.pod_keys2[m2].primary = self.pod_free_nodes[self.pod_keys[j].pod]
                self.pod_keys2[m2].secondary = 0
                self.pod_keys2[m2].pod = self.pod_keys[j].pod
                m2 += 1
            qsort(self.pod_keys2, m2, sizeof(PodKey), cmp_pod_key)
            for j in range(m2):
                q = self.pod_keys2[j].pod
                if self.pod_free_nodes[q] >= need:
                    self.nodes_in_pod(q, need, &self.out_nodes[taken])
                    if self.fits(&self.out_nodes[taken], need, target, &n_used):
                        ok = True
                        break
            break
        for i in range(n_used):
            self.row_used[self.used_rows[i]] = 0
        return ok

    @cython.final
    cdef bint fits(self, const index_t* nodes, index_t n_nodes, int target,
                   index_t* n_used) noexcept nogil:
        """Whether whole empty nodes at cap ``target`` fit beside row_used; if so, add.

        Python twin: ``_fits``.  row_base is the candidate's own per-row load.
        """
        cdef int64_t node_w = self.busy_step_w + <int64_t>self.G * (target - self.gpu_idle_w)
        cdef index_t i, k, r, row, n_rows = 0
        cdef bint ok = True
        for i in range(n_nodes):
            r = self.node_rack[nodes[i]]
            for k in range(self.rack_rows_ptr[r], self.rack_rows_ptr[r + 1]):
                row = self.rack_rows[k]
                if self.row_base[row] == 0:
                    self.touched_rows[n_rows] = row
                    n_rows += 1
                self.row_base[row] += self.rack_coef[k] * node_w
        for i in range(n_rows):
            row = self.touched_rows[i]
            if self.row_used[row] + self.row_base[row] > self.slack[row]:
                ok = False
                break
        for i in range(n_rows):
            row = self.touched_rows[i]
            if ok:
                if self.row_used[row] == 0:
                    self.used_rows[n_used[0]] = row
                    n_used[0] += 1
                self.row_used[row] += self.row_base[row]
            self.row_base[row] = 0
        return ok

    @cython.final
    cdef index_t pods_fullest_first(self) noexcept nogil:
        """Pods with empty nodes into pod_keys, by (empty nodes descending, index); count."""
        cdef index_t p, m = 0
        for p in range(self.n_pods):
            if self.pod_free_nodes[p]:
                self.pod_keys[m].primary = -self.pod_free_nodes[p]
                self.pod_keys[m].secondary = 0
                self.pod_keys[m].pod = p
                m += 1
        qsort(self.pod_keys, m, sizeof(PodKey), cmp_pod_key)
        return m

    @cython.final
    cdef void spread_over_pods(self, index_t k) noexcept nogil:
        """k empty nodes over the fewest pods into out_nodes: fullest pods whole."""
        cdef index_t i, j, p, r, taken = 0, last = -1, rem
        cdef index_t m = self.pods_fullest_first()
        i = 0
        while k - taken > self.pod_free_nodes[self.pod_keys[i].pod]:
            p = self.pod_keys[i].pod
            for j in range(self.pod_racks_ptr[p], self.pod_racks_ptr[p + 1]):
                r = self.pod_racks[j]
                taken += self.empty_nodes(r, self.rack_free_nodes[r], &self.out_nodes[taken])
            i += 1
        rem = k - taken
        for j in range(i, m):
            p = self.pod_keys[j].pod
            if self.pod_free_nodes[p] >= rem and (
                    last < 0 or self.pod_free_nodes[p] < self.pod_free_nodes[last]
                    or (self.pod_free_nodes[p] == self.pod_free_nodes[last] and p < last)):
                last = p
        self.nodes_in_pod(last, rem, &self.out_nodes[taken])

    # ==================================================================================
    # The cap a candidate allows
    # ==================================================================================

    @cython.final
    cdef int snap(self, int64_t bound_w, int max_cap, int min_cap) noexcept nogil:
        """Highest cap on the grid (max, max - step, ..., min) at most bound_w; -1 if none."""
        cdef int64_t step = self.cap_step_w, cap
        if bound_w >= max_cap:
            return max_cap
        if bound_w < min_cap:
            return -1
        cap = max_cap - step * ((max_cap - bound_w + step - 1) // step)  # numerator > 0
        return <int>cap if cap >= min_cap else min_cap

    @cython.final
    @cython.cdivision(True)  # every division below has a numerator >= 0 and divisor > 0
    cdef int rack_cap(self, index_t rack, int g, bint empty, int max_cap, int min_cap,
                      index_t* row_out, index_t* run_end_out) noexcept nogil:
        """Cap for g GPUs on one node of ``rack`` (empty or not); the limiting row in
        row_out, and the end of the run of racks that row limits alike in run_end_out.

        Row i holds iff coef*(busy_step if empty) + coef*g*(cap - idle) <= slack[i].
        """
        cdef int64_t base_w = self.busy_step_w if empty else 0
        cdef int64_t bound = max_cap, room, coef
        cdef index_t k, row, bound_row = -1, run_end = rack + 1
        for k in range(self.rack_rows_ptr[rack], self.rack_rows_ptr[rack + 1]):
            row = self.rack_rows[k]
            coef = self.rack_coef[k]
            room = self.slack[row] - coef * base_w
            if room < 0:
                row_out[0] = row
                run_end_out[0] = self.rack_run_end[k]
                return -1
            # row_bound = idle + room // (coef*g) is below bound iff room < coef*g*(bound
            # - idle) (floor division by a positive number), so only a row that binds
            # pays for a 64-bit division; most rows of a search have room to spare.
            if room < coef * g * (bound - self.gpu_idle_w):
                bound = self.gpu_idle_w + room // (coef * g)
                bound_row = row
                run_end = self.rack_run_end[k]
        row_out[0] = bound_row
        run_end_out[0] = run_end
        return self.snap(bound, max_cap, min_cap)

    @cython.final
    @cython.cdivision(True)
    cdef int gang_cap(self, const index_t* nodes, index_t n_nodes, int max_cap, int min_cap,
                      index_t* row_out) noexcept nogil:
        """Cap for whole empty ``nodes``; limiting row (lowest index on ties) in row_out."""
        cdef index_t i, k, r, row, n_racks = 0, n_rows = 0, bound_row = -1, neg_row = -1
        cdef int64_t bound = max_cap, room, row_bound, count
        for i in range(n_nodes):
            r = self.node_rack[nodes[i]]
            if self.rack_count[r] == 0:
                self.touched_racks[n_racks] = r
                n_racks += 1
            self.rack_count[r] += 1
        for i in range(n_racks):
            r = self.touched_racks[i]
            count = self.rack_count[r]
            self.rack_count[r] = 0
            for k in range(self.rack_rows_ptr[r], self.rack_rows_ptr[r + 1]):
                row = self.rack_rows[k]
                if self.row_per_w[row] == 0:
                    self.touched_rows[n_rows] = row
                    n_rows += 1
                self.row_base[row] += self.rack_coef[k] * count * self.busy_step_w
                self.row_per_w[row] += self.rack_coef[k] * count * self.G
        for i in range(n_rows):
            row = self.touched_rows[i]
            room = self.slack[row] - self.row_base[row]
            if room < 0:
                if neg_row < 0 or row < neg_row:
                    neg_row = row
            elif neg_row < 0:
                row_bound = self.gpu_idle_w + room // self.row_per_w[row]
                if row_bound < bound or (row_bound == bound and bound_row >= 0
                                         and row < bound_row):
                    bound = row_bound
                    bound_row = row
            self.row_base[row] = 0
            self.row_per_w[row] = 0
        if neg_row >= 0:
            row_out[0] = neg_row
            return -1
        row_out[0] = bound_row
        return self.snap(bound, max_cap, min_cap)

    # ==================================================================================
    # State changes
    # ==================================================================================

    @cython.final
    cdef void commit(self, const index_t* nodes, index_t n_nodes, int gpus_per_node,
                     int cap_w, int sign) noexcept nogil:
        """Take (sign=+1) or give back (sign=-1) gpus_per_node GPUs at cap_w on nodes.

        Keeps every invariant in the module docstring.
        """
        cdef index_t i, k, n, r, p, before, after, n_racks = 0
        cdef int64_t delta
        cdef Py_ssize_t hist_base
        cdef bint is_open
        for i in range(n_nodes):
            n = nodes[i]
            before = self.node_free[n]
            after = before - sign * gpus_per_node
            self.node_free[n] = after
            is_open = self.node_state[n] == UP
            if before and is_open:
                self.bit_clear(before, n)
            if after and is_open:
                self.bit_set(after, n)
            r = self.node_rack[n]
            delta = <int64_t>gpus_per_node * (cap_w - self.gpu_idle_w)
            if before == self.G or after == self.G:  # the node turned busy, or idle again
                delta += self.busy_step_w
                if is_open:
                    p = self.rack_pod[r]
                    hist_base = self.pod_hist_ptr[p]
                    self.pod_hist[hist_base + self.rack_free_nodes[r]] -= 1
                    self.rack_free_nodes[r] -= sign
                    self.pod_hist[hist_base + self.rack_free_nodes[r]] += 1
                    self.pod_free_nodes[p] -= sign
            if self.rack_delta[r] == 0:
                self.touched_racks[n_racks] = r
                n_racks += 1
            self.rack_delta[r] += delta
        for i in range(n_racks):
            r = self.touched_racks[i]
            delta = self.rack_delta[r]
            self.rack_delta[r] = 0
            self.rack_power[r] += sign * delta
            for k in range(self.rack_rows_ptr[r], self.rack_rows_ptr[r + 1]):
                self.slack[self.rack_rows[k]] -= sign * self.rack_coef[k] * delta
        self.free_gpus_total -= sign * gpus_per_node * n_nodes

    @cython.final
    cdef _commit_placement(self, placement, int sign):
        # a Placement is a named tuple: (job_id, nodes, gpus_per_node, cap_w)
        cdef tuple fields = <tuple>placement
        cdef tuple nodes = <tuple>fields[1]
        cdef index_t i, n = len(nodes)
        for i in range(n):
            self.cand_nodes[i] = nodes[i]
        self.commit(&self.cand_nodes[0], n, fields[2], fields[3], sign)

    def _insert(self, job, placement):
        """Commit a placement the caller has already checked (restore), and record it."""
        self._commit_placement(placement, 1)
        self._jobs[(<tuple>placement)[0]] = (job, placement)

    def _replace(self, job, old, new):
        """Swap a job's placement for a checked one, keeping its place in the order."""
        self.lock.enter()
        try:
            self._commit_placement(old, -1)
            self._commit_placement(new, 1)
            self._jobs[(<tuple>new)[0]] = (job, new)
        finally:
            self.lock.exit()

    @cython.final
    cdef void commit_nodes(self, object nodes, int gpus_per_node, int cap_w, int sign):
        """commit() over a sequence of node ints (Cython only: the twin's _commit takes one)."""
        cdef index_t i, n = len(nodes)
        for i in range(n):
            self.cand_nodes[i] = nodes[i]
        self.commit(&self.cand_nodes[0], n, gpus_per_node, cap_w, sign)

    def _reshape(self, job, new, removed, added):
        """Take ``removed`` nodes from a job and give it ``added`` ones at its own cap.

        For a failure (a node lost) and a repair at the same cap (nodes added), without
        touching the job's other nodes.  The caller has checked everything: ``new`` is the
        job's placement less ``removed`` plus ``added``, at the same cap and GPUs a node.
        """
        cdef tuple fields = <tuple>new
        self.lock.enter()
        try:
            if len(removed):
                self.commit_nodes(removed, fields[2], fields[3], -1)
            if len(added):
                self.commit_nodes(added, fields[2], fields[3], 1)
            self._jobs[fields[0]] = (job, new)
        finally:
            self.lock.exit()

    # ==================================================================================
    # Node states and live limits
    # ==================================================================================

    def _set_node_state(self, index_t node, int state, int64_t power_delta_w):
        """Put ``node`` in ``state`` and add ``power_delta_w`` to its rack's power.

        The caller (gpusched/_site.py) has checked the node and the state, emptied a node
        that goes DOWN or SPARE of its jobs, and computed what the change costs in watts.
        """
        cdef bint was_open
        cdef index_t k, r
        if not 0 <= node < self.n_nodes or not UP <= state <= SPARE:
            raise IndexError(f"node {node} or state {state} out of range")  # caller's bug
        self.lock.enter()
        try:
            was_open = self.node_state[node] == UP
            self.node_state[node] = state
            if was_open != (state == UP):
                self.open_node(node, 1 if state == UP else -1)
            if power_delta_w:
                r = self.node_rack[node]
                self.rack_power[r] += power_delta_w
                for k in range(self.rack_rows_ptr[r], self.rack_rows_ptr[r + 1]):
                    self.slack[self.rack_rows[k]] -= self.rack_coef[k] * power_delta_w
        finally:
            self.lock.exit()

    @cython.final
    cdef void open_node(self, index_t node, int sign) noexcept nogil:
        """Add a node to (sign=+1) or take it out of (sign=-1) the search's indexes."""
        cdef index_t free_n = self.node_free[node], r, p
        cdef Py_ssize_t hist_base
        if free_n:
            if sign > 0:
                self.bit_set(free_n, node)
            else:
                self.bit_clear(free_n, node)
        if free_n == self.G:
            r = self.node_rack[node]
            p = self.rack_pod[r]
            hist_base = self.pod_hist_ptr[p]
            self.pod_hist[hist_base + self.rack_free_nodes[r]] -= 1
            self.rack_free_nodes[r] += sign
            self.pod_hist[hist_base + self.rack_free_nodes[r]] += 1
            self.pod_free_nodes[p] += sign

    def _set_limit_units(self, index_t row, int64_t limit_units):
        """Set row ``row``'s limit b to ``limit_units`` (checked by the caller); the slack
        moves with it and may go negative: the row is then over, and refuses more load."""
        if not 0 <= row < self.n_rows:
            raise IndexError(f"row {row} out of range")  # the caller's bug
        self.lock.enter()
        try:
            self.slack[row] += limit_units - self.limit_units[row]
            self.limit_units[row] = limit_units
        finally:
            self.lock.exit()

    def _jobs_on(self, index_t node):
        """Ids of the jobs holding GPUs on ``node``, in placement order."""
        if not 0 <= node < self.n_nodes:
            raise IndexError(f"node {node} out of range")  # the caller's bug
        out = []
        with self.lock:
            if self.node_free[node] == self.G:
                return out
            for job_id, entry in self._jobs.items():
                if node in (<tuple>(<tuple>entry)[1])[1]:
                    out.append(job_id)
        return out

    # ==================================================================================
    # Read-only views
    # ==================================================================================

    def __len__(self):
        return len(self._jobs)

    def __contains__(self, job_id):
        return type(job_id) is str and job_id in self._jobs

    def free_gpus(self):
        """Free GPUs in the whole cluster."""
        return self.free_gpus_total

    def node_free_gpus(self):
        """Free GPUs per node (int32 copy)."""
        return np.asarray(self.node_free).copy()

    def rack_power_w(self):
        """Budgeted power of each rack, in watts (int64 copy)."""
        return np.asarray(self.rack_power).copy()

    def row_slack_units(self):
        """``b - A·P`` per row in COEF_SCALE units (int64 copy); negative only for a row
        whose live limit was lowered below its load (``Engine.violations``)."""
        return np.asarray(self.slack).copy()

    def row_limit_units(self):
        """The live limits b per row in COEF_SCALE units (int64 copy)."""
        return np.asarray(self.limit_units).copy()

    def node_state_codes(self):
        """Each node's state: UP 0, DRAINING 1, DOWN 2, SPARE 3 (int8 copy)."""
        return np.asarray(self.node_state).copy()

    # The views take the lock, as in the twin: a finaliser run by the list's allocation
    # could otherwise place or release while they iterate.
    def placements(self):
        """Live placements, in the order they were made."""
        with self.lock:
            return [entry[1] for entry in self._jobs.values()]

    def jobs(self):
        """Live jobs, in the order they were placed."""
        with self.lock:
            return [entry[0] for entry in self._jobs.values()]

    def placement(self, job_id):
        # keys are exact str: any other id is unknown, and is never hashed
        entry = self._jobs.get(job_id) if type(job_id) is str else None
        if entry is None:
            raise unknown_job(job_id)
        return entry[1]

    def job(self, job_id):
        """The Job placed under ``job_id``."""
        entry = self._jobs.get(job_id) if type(job_id) is str else None
        if entry is None:
            raise unknown_job(job_id)
        return entry[0]

    def _index_state(self):
        """Every derived index, for tests that check the twins agree to the last counter."""
        cdef int f
        cdef index_t n
        free_nodes = []
        for f in range(1, self.G + 1):
            members = []
            n = self.next_with_free(f, 0)
            while n >= 0:
                members.append(n)
                n = self.next_with_free(f, n + 1)
            free_nodes.append(members)
        hist_ptr = np.asarray(self.pod_hist_ptr).tolist()
        hist = [np.asarray(self.pod_hist[hist_ptr[p]:hist_ptr[p + 1]]).tolist()
                for p in range(self.n_pods)]
        return {
            "node_free": np.asarray(self.node_free).tolist(),
            "free_nodes": free_nodes,
            "rack_free_nodes": np.asarray(self.rack_free_nodes).tolist(),
            "pod_free_nodes": np.asarray(self.pod_free_nodes).tolist(),
            "pod_rack_hist": hist,
            "rack_power_w": np.asarray(self.rack_power).tolist(),
            "slack": np.asarray(self.slack).tolist(),
            "free_gpus": self.free_gpus_total,
            "node_state": np.asarray(self.node_state).tolist(),
            "limit_units": np.asarray(self.limit_units).tolist(),
        }

    # ==================================================================================
    # The bitsets behind next_with_free (Cython only: the twin keeps sorted lists)
    # ==================================================================================

    @cython.final
    cdef void bit_set(self, int f, index_t n) noexcept nogil:
        cdef Py_ssize_t w = f * self.n_words + (n >> 6)
        if self.bits[w] == 0:
            self.summary[f * self.n_summary + ((n >> 6) >> 6)] |= ONE << ((n >> 6) & 63)
        self.bits[w] |= ONE << (n & 63)

    @cython.final
    cdef void bit_clear(self, int f, index_t n) noexcept nogil:
        cdef Py_ssize_t w = f * self.n_words + (n >> 6)
        self.bits[w] &= ~(ONE << (n & 63))
        if self.bits[w] == 0:
            self.summary[f * self.n_summary + ((n >> 6) >> 6)] &= ~(ONE << ((n >> 6) & 63))

    # ==================================================================================
    # The C-level API (Cython only; declared and documented in gpusched/_engine_c.pxd)
    # ==================================================================================

    cdef SearchResult c_search(self, int gpus, int max_cap, int min_cap,
                               index_t pod) noexcept nogil:
        """The C API's search (a virtual call, for other modules); see search()."""
        return self.search(gpus, max_cap, min_cap, pod)

    cdef void c_commit(self, const index_t* nodes, index_t n_nodes, int gpus_per_node,
                       int cap_w, int sign) noexcept nogil:
        """The C API's commit (a virtual call, for other modules); see commit()."""
        self.commit(nodes, n_nodes, gpus_per_node, cap_w, sign)

    cdef int c_place(self, int gpus, int max_cap, int min_cap, index_t pod,
                     index_t* nodes_out, index_t* n_nodes_out) noexcept nogil:
        """Place a job given by numbers only; returns its cap, or -1 if it does not fit.

        The caller guarantees what place() would check: 1 <= gpus <= cluster GPUs, whole
        nodes above G, caps inside the power model's range, pod < num_pods (-1: any).
        nodes_out must hold gpus / G + 1 entries.
        """
        cdef SearchResult res = self.search(gpus, max_cap, min_cap, pod)
        cdef index_t i
        cdef int gpn = gpus if gpus <= self.G else self.G
        if res.status != FOUND:
            n_nodes_out[0] = 0
            return -1
        for i in range(res.n_nodes):
            nodes_out[i] = self.out_nodes[i]
        n_nodes_out[0] = res.n_nodes
        self.commit(nodes_out, res.n_nodes, gpn, res.cap_w, 1)
        return res.cap_w

    cdef void c_release(self, const index_t* nodes, index_t n_nodes, int gpus,
                        int cap_w) noexcept nogil:
        """Give back what c_place returned for a job of ``gpus`` GPUs at ``cap_w``."""
        self.commit(nodes, n_nodes, gpus if gpus <= self.G else self.G, cap_w, -1)
