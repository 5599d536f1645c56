# The engine's one lock (included by ext/_engine.pyx; declared in gpusched/_engine_c.pxd).
#
# The pure-Python twin takes a threading.RLock; this is the same contract (re-entrant,
# one holder at a time) made cheap enough for a hot path that is a fraction of a
# microsecond.

from cpython.pythread cimport (WAIT_LOCK, PyThread_acquire_lock,
                               PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_get_thread_ident, PyThread_release_lock)

cdef class EngineLock:
    """The engine's re-entrant lock, with C-level enter/exit for the hot path (and a
    context manager for the Python-level methods).

    The GIL makes the uncontended case a few loads and stores: ``owner``, ``count`` and
    ``waiters`` are read and written only by a thread that holds the GIL, and nothing
    between a test and the store after it can release the GIL, so each enter/exit is
    atomic.  (This module does not declare itself free-threading compatible, so a
    free-threaded CPython keeps the GIL on while it is loaded.)  Taking a PyThread lock
    on every call instead costs a clock read and a semaphore round trip.

    A thread that finds the lock held by another thread sleeps on ``wakeup`` with the
    GIL released, so the holder, which may be searching without the GIL, can finish.
    Invariants: ``count == 0`` iff ``owner == 0``; ``waiters`` counts the threads in
    the waiting loop; every exit() to zero with ``waiters > 0`` releases ``wakeup``
    once, and a woken thread tests ``count`` again, so a wake-up that finds a newcomer
    holding the lock costs one more sleep (the newcomer's exit wakes it), never a lost
    waiter.  tests/test_cython_api.py plants both failure modes.
    """

    def __cinit__(self):
        self.wakeup = PyThread_allocate_lock()
        if self.wakeup == NULL:
            raise MemoryError()
        PyThread_acquire_lock(self.wakeup, WAIT_LOCK)  # nobody to wake yet
        self.count = 0
        self.owner = 0
        self.waiters = 0

    def __dealloc__(self):
        if self.wakeup != NULL:
            PyThread_free_lock(self.wakeup)

    @cython.final
    cdef int enter(self) except -1:
        cdef unsigned long me = PyThread_get_thread_ident()
        if self.count == 0:
            self.owner = me
            self.count = 1
            return 0
        if self.owner == me:
            self.count += 1
            return 0
        self.waiters += 1
        while self.count:
            with nogil:
                PyThread_acquire_lock(self.wakeup, WAIT_LOCK)
        self.waiters -= 1
        self.owner = me
        self.count = 1
        return 0

    @cython.final
    cdef void exit(self) noexcept:
        self.count -= 1
        if self.count == 0:
            self.owner = 0
            if self.waiters:
                PyThread_release_lock(self.wakeup)

    def __enter__(self):
        self.enter()
        return self

    def __exit__(self, *exc_info):
        self.exit()
        return False
