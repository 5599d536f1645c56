/* Recycling of released (job, placement) records for gpusched's Cython core.

   CPython-level helpers, kept out of ext/_engine.pyx so the .pyx reads as the algorithm
   beside its pure-Python twin.  Included by ext/_engine.pyx (cdef extern from
   "_recycle.h"); every function is static, so each includer gets its own copy. */
#ifndef GPUSCHED_RECYCLE_H
#define GPUSCHED_RECYCLE_H

#include <Python.h>

/* Set the items of a tuple that only the caller references (as CPython's zip and
   enumerate do with their result tuples); each new item gains a reference, each old
   one loses it, last, when the tuple is whole again. */
static void gs_tuple_refill(PyObject* t, PyObject* const* items, Py_ssize_t n) {
    PyObject* old[4];
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        old[i] = PyTuple_GET_ITEM(t, i);
        Py_INCREF(items[i]);
        PyTuple_SET_ITEM(t, i, items[i]);
    }
    for (i = 0; i < n; i++) Py_DECREF(old[i]);
}

/* A new Placement (a tuple subclass with no slots of its own) built as
   tuple.__new__ builds one, less the argument tuple and the call through
   tuple.__new__: the type's own allocator, then the four items. */
static PyObject* gs_new_placement(PyObject* type, PyObject* const* fields) {
    PyTypeObject* t = (PyTypeObject*)type;
    PyObject* p = t->tp_alloc(t, 4);
    Py_ssize_t i;
    if (p == NULL) return NULL;
    for (i = 0; i < 4; i++) {
        Py_INCREF(fields[i]);
        PyTuple_SET_ITEM(p, i, fields[i]);
    }
    return p;
}

/* The record (job, placement) of a new placement, placement built from `fields`
   (job_id, nodes, gpus_per_node, cap_w).  A new reference, or NULL on MemoryError.

   Allocating and freeing a Placement (a tuple subtype) and its record cost more
   than the search of an 8-GPU job.  So release keeps its record in a small ring of
   spares (gs_keep_record) and this refills one.  It refills the spare's Placement
   too when the record holds the only reference to it, that is when whoever got it
   back from place and release has dropped it: then no one can see the change.  A
   Placement still held anywhere is left alone and a new one made.  The ring has
   n_spares records, so a caller that holds on to the last few placements, as
   `p = place(job)` in a loop holds the previous one during the next call, still
   gets a free one.  Free-threaded builds, where a reference count of 1 proves
   nothing, always allocate. */
static PyObject* gs_take_record(PyObject** spares, int n_spares, PyObject* type,
                                PyObject* job, PyObject* const* fields) {
    PyObject* record;
    PyObject* placement;
#ifndef Py_GIL_DISABLED
    int i, pick = -1;
    for (i = 0; i < n_spares; i++) {
        record = spares[i];
        if (record == NULL || Py_REFCNT(record) != 1) continue;
        if (Py_REFCNT(PyTuple_GET_ITEM(record, 1)) == 1) { pick = i; break; }
        if (pick < 0) pick = i;
    }
    if (pick >= 0) {
        record = spares[pick];
        placement = PyTuple_GET_ITEM(record, 1);
        if (Py_REFCNT(placement) == 1) {
            gs_tuple_refill(placement, fields, 4);
        } else {
            placement = gs_new_placement(type, fields);
            if (placement == NULL) return NULL;
            Py_DECREF(PyTuple_GET_ITEM(record, 1));
            PyTuple_SET_ITEM(record, 1, placement);
        }
        spares[pick] = NULL;
        gs_tuple_refill(record, &job, 1);
        if (!PyObject_GC_IsTracked(record)) PyObject_GC_Track(record);
        return record;
    }
#endif
    placement = gs_new_placement(type, fields);
    if (placement == NULL) return NULL;
    record = PyTuple_Pack(2, job, placement);
    Py_DECREF(placement);
    return record;
}

/* Keep `record` (job, placement), just taken out of the job table, in the ring of
   spares at *next, letting go of the record there before; the kept record lets go
   of its job at once.  Only a record the caller alone holds is kept. */
static void gs_keep_record(PyObject** spares, int n_spares, int* next,
                           PyObject* record) {
#ifndef Py_GIL_DISABLED
    PyObject* old = spares[*next];
    PyObject* none = Py_None;
    if (Py_REFCNT(record) != 1) return;
    Py_INCREF(record);
    spares[*next] = record;
    *next = (*next + 1) % n_spares;
    gs_tuple_refill(record, &none, 1);
    Py_XDECREF(old);
#endif
}

#endif /* GPUSCHED_RECYCLE_H */
