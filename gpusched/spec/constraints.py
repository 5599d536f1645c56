"""The constraint system A·P <= b, and the integer units both engine twins read.

P is the vector of rack powers in watts.  Every limit the site has, electrical or
thermal, is a row of A with a name and a kind; the engine, the scipy allocator, the
verifier and the reports all read this one system and nobody re-derives a limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    # scipy.sparse costs about 250 ms to import (its array-API shim walks numpy), so it
    # loads where a matrix is first built: `import gpusched` and `gpusched --help` stay light
    import scipy.sparse as sp

from ..errors import UnknownRowError

__all__ = ["Constraints", "ROW_KINDS", "RACK_KINDS", "COEF_SCALE", "MAX_ROW_LOAD_UNITS"]

#: Kinds of constraint rows.  ``thermal`` rows (inlet temperature, D·P <= T_red - T_sup,
#: Tang et al. 2008) come only from a spec's extra ``limits``.
ROW_KINDS = ("rack-feed", "row", "hall", "facility", "cdu", "rack-air", "air-cooling",
             "hall-cooling", "thermal")
#: Rack cooling kinds: direct liquid cooling with a CDU, or air.
RACK_KINDS = ("liquid", "air")
#: The engine works in integers: coefficients are held in millionths, loads in
#: coefficient-millionths times watts.  Sums then never depend on the order they are
#: added in, so both twins agree to the last unit.
COEF_SCALE = 1_000_000
_MAX_LIMIT_W = 1e12  # a terawatt: anything above is a typo, and keeps the int64 sums safe
#: The most a row's load may reach in coefficient units (coefficient millionths times
#: watts) with every GPU of every rack at its TDP.  The twins hold loads and limits in
#: int64 and add a candidate's load to a row's before comparing: with loads below 2**62
#: and limits below 1e18 units (1 TW), every sum and difference stays below 2**63.
MAX_ROW_LOAD_UNITS = 2 ** 62


# ======================================================================================
# The constraint system
# ======================================================================================

@dataclass(frozen=True, eq=False)
class Constraints:
    """The cluster's limits as ``A · P <= b`` (one row per limit, one column per rack).

    Attributes
    ----------
    A : scipy.sparse.csr_matrix, float64, shape (num_rows, num_racks)
        Non-negative coefficients (1 for electrical rows, the liquid or air heat fraction
        for cooling rows).
    b : ndarray of float64, shape (num_rows,)
        The limits, in watts for electrical and cooling rows.
    names : tuple of str
        A human name per row, e.g. ``"hall-2 switchboard"``.
    kinds : tuple of str
        Each row's kind, one of :data:`ROW_KINDS`.
    """

    A: sp.csr_matrix
    b: np.ndarray
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    #: Network pod of each rack (int32, shape (num_racks,)); defines :attr:`zone_rows`.
    rack_pod: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return self.A.shape[0]

    # Integer forms the engine twins read.  Computed once, here, so both agree.
    @cached_property
    def b_units(self) -> np.ndarray:
        """``floor(b * COEF_SCALE)`` as int64."""
        return np.array([math.floor(v * COEF_SCALE) for v in self.b], dtype=np.int64)

    @cached_property
    def A_units(self) -> sp.csr_matrix:
        """``A`` in millionths, as int64 CSR: THE integer coefficients every reader uses.

        It has exactly ``A``'s sparsity pattern (explicit zeros kept), so
        ``A_units.data[k]`` is the integer form of ``A.data[k]``.
        """
        units = self.A.tocsr(copy=True)
        units.sort_indices()
        units.data = np.rint(units.data * COEF_SCALE)
        units = units.astype(np.int64)
        units.data.setflags(write=False)
        return units

    @cached_property
    def _csc_units(self) -> sp.csc_matrix:
        units = self.A_units.tocsc(copy=True)
        units.sort_indices()
        units.eliminate_zeros()  # a zero coefficient would divide by zero in the engine
        return units

    @cached_property
    def zone_rows(self) -> np.ndarray:
        """Rows whose racks lie in two or more network pods (int64 indices, ascending).

        A zone row is a limit that pods share (a hall's switchboard and cooling plant, the
        facility, a busway or a thermal limit across pods): choosing the pod of a job moves
        load against it, so the allocator models it across pods, and a site with spare
        watts on every zone row has no choice of zone to make.  Every other row sits
        inside one pod.  Empty when ``rack_pod`` is not given.
        """
        if self.rack_pod is None:
            return np.zeros(0, dtype=np.int64)
        coo = self.A.tocoo()
        n_pods = int(np.max(self.rack_pod)) + 1 if len(self.rack_pod) else 0
        pairs = np.unique(coo.row.astype(np.int64) * max(n_pods, 1)
                          + np.asarray(self.rack_pod)[coo.col].astype(np.int64))
        pods_per_row = np.bincount(pairs // max(n_pods, 1), minlength=self.num_rows)
        rows = np.flatnonzero(pods_per_row >= 2).astype(np.int64)
        rows.setflags(write=False)
        return rows

    def rows_of_kind(self, *kinds: str) -> np.ndarray:
        """Indices of the rows of any of ``kinds`` (int64, ascending): the per-kind reports."""
        return np.array([i for i, k in enumerate(self.kinds) if k in kinds], dtype=np.int64)

    @cached_property
    def rack_rows_indptr(self) -> np.ndarray:
        """For rack r, its rows are ``rack_rows_index[indptr[r]:indptr[r+1]]`` (int32)."""
        return self._csc_units.indptr.astype(np.int32)

    @cached_property
    def rack_rows_index(self) -> np.ndarray:
        return self._csc_units.indices.astype(np.int32)

    @cached_property
    def rack_rows_coef_units(self) -> np.ndarray:
        """Coefficients of those rows, in millionths (int64)."""
        return self._csc_units.data.astype(np.int64)

    @cached_property
    def rack_rows_run_end(self) -> np.ndarray:
        """For each (rack r, row i) entry: the end (exclusive) of the run r, r+1, ... of
        consecutive racks that are all in row i with the same coefficient (int32).

        Racks of one run see row i the same way, so when row i keeps one of them below a
        cap, it keeps all of them there: the engine's search skips the rest of the run.
        """
        csr = self._csc_units.tocsr()
        csr.sort_indices()
        end = np.empty(csr.nnz, dtype=np.int64)
        for i in range(csr.shape[0]):
            lo, hi = csr.indptr[i], csr.indptr[i + 1]
            racks, coefs = csr.indices[lo:hi], csr.data[lo:hi]
            # a run breaks where the next rack is not r + 1 or has another coefficient
            breaks = np.flatnonzero((np.diff(racks) != 1) | (np.diff(coefs) != 0))
            starts = np.concatenate(([0], breaks + 1))
            stops = np.concatenate((breaks + 1, [len(racks)]))
            run_of = np.repeat(np.arange(len(starts)), stops - starts)
            end[lo:hi] = racks[stops[run_of] - 1] + 1
        # end[] is in CSR order (row-major); map it to the CSC order the engine reads
        import scipy.sparse as sp

        by_entry = sp.csr_matrix((end.astype(float), csr.indices, csr.indptr),
                                 shape=csr.shape).tocsc()
        by_entry.sort_indices()
        return by_entry.data.astype(np.int32)

    def load_units(self, rack_power_w: np.ndarray) -> np.ndarray:
        """Integer row loads ``A_units · P`` for integer rack powers (exact)."""
        return self.A_units @ np.asarray(rack_power_w, dtype=np.int64)

    def slack_w(self, rack_power_w: np.ndarray) -> np.ndarray:
        """``b - A·P`` in the rows' own units (watts for power rows), as float64."""
        return self.b - self.A @ np.asarray(rack_power_w, dtype=float)

    def violations(self, rack_power_w: np.ndarray) -> list[tuple[str, float, float]]:
        """``(name, load, limit)`` for each row the rack powers break, by the exact test."""
        load = self.load_units(rack_power_w)
        bad = np.flatnonzero(load > self.b_units)
        return [(self.names[i], float(load[i]) / COEF_SCALE, float(self.b[i])) for i in bad]

    def row(self, name: str) -> int:
        """Index of the row called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise UnknownRowError(f"no constraint row named {name!r}", field="name") from None
