/* Reading a Job's __slots__ without getattr, for gpusched's Cython core.

   place() reads a Job's four fields as four loads when the object's type is exactly
   Job; these helpers find where the slots live and read one. */
#ifndef GPUSCHED_JOB_SLOTS_H
#define GPUSCHED_JOB_SLOTS_H

#include <Python.h>
#include "structmember.h"
/* Where a __slots__ attribute lives in an instance of a Python class: the byte
   offset its member descriptor reads, or -1 if `descr` is not a plain object slot
   (then the caller falls back to getattr). */
static Py_ssize_t gs_slot_offset(PyObject* descr) {
    if (!PyObject_TypeCheck(descr, &PyMemberDescr_Type)) return -1;
    PyMemberDef* member = ((PyMemberDescrObject*)descr)->d_member;
    return member->type == T_OBJECT_EX ? member->offset : -1;
}
/* The object in the slot at `offset` of `obj`, borrowed; NULL if never set. */
static inline PyObject* gs_slot(PyObject* obj, Py_ssize_t offset) {
    return *(PyObject**)((char*)obj + offset);
}
#endif /* GPUSCHED_JOB_SLOTS_H */
