"""The twin contract: what an engine core provides, whichever twin it is.

``gpusched.engine.Engine`` runs on one of two cores with the same algorithm: the
compiled ``gpusched._engine_c.EngineCore`` (built from ``ext/_engine.pyx``) and the
pure-Python ``gpusched._engine_py.EngineCore``.  :class:`EngineCoreAPI` lists every
attribute and method that ``engine.py`` (and the modules that take an Engine's lock)
use on a core, with their types.  Both twins meet it: mypy checks the Python twin and
the stub ``gpusched/_engine_c.pyi`` against it (``_check_twins`` below), stubtest
checks that stub against the compiled module, and ``tests/test_twin_contract.py``
checks both classes at run time and their answers against each other.

The private entries (``_search``, ``_insert``, ``_replace``, ``_reshape``, ``_reset``,
``_set_node_state``, ``_set_limit_units``, ``_jobs_on``, ``_index_state``) are part of
the contract: the Engine's explain, restore, set_cap and place_at_most, and the site
operations of ``gpusched/_site.py`` (fail, drain, repair, spares, live limits), are
written once on top of them, and the differential tests compare them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ContextManager, Iterable, Protocol

import numpy as np

if TYPE_CHECKING:
    from .spec import Cluster
    from .job import Job, Placement

__all__ = ["EngineCoreAPI", "SearchAnswer", "CORE_METHODS"]

#: ``_search``'s answer: (status, cap_w, nodes ascending, limiting row or -1).  status is
#: FOUND (0), NO_CAPACITY (1) or NO_POWER (2); when it is not FOUND, cap_w is -1 and
#: nodes is empty.
SearchAnswer = tuple[int, int, list[int], int]


class EngineCoreAPI(Protocol):
    """The methods and attributes both engine twins provide (see the module docstring)."""

    backend: str

    @property
    def cluster(self) -> "Cluster": ...

    # the core's one re-entrant lock; every public method below takes it
    @property
    def _lock(self) -> ContextManager[Any]: ...

    # ---- public hot path ------------------------------------------------------------
    def place(self, job: "Job", pod: Any = None) -> "Placement | None": ...
    def release(self, job_id: str) -> "Placement": ...
    def place_many(self, jobs: Iterable["Job"], pod: Any = None) -> "list[Placement | None]": ...
    def release_many(self, job_ids: Iterable[str]) -> "list[Placement]": ...

    # ---- search (changes nothing) ---------------------------------------------------
    def _search(self, gpus: int, max_cap: int, min_cap: int, pod: int) -> SearchAnswer: ...

    # ---- state changes the caller has already checked ------------------------------
    def _reset(self) -> None: ...
    def _insert(self, job: "Job", placement: "Placement") -> None: ...
    def _replace(self, job: "Job", old: "Placement", new: "Placement") -> None: ...
    def _reshape(self, job: "Job", new: "Placement", removed: Any, added: Any) -> None: ...

    # ---- node states and live limits (the caller has checked; see gpusched/_site.py)
    def _set_node_state(self, node: int, state: int, power_delta_w: int) -> None: ...
    def _set_limit_units(self, row: int, limit_units: int) -> None: ...
    def _jobs_on(self, node: int) -> list[str]: ...

    # ---- read-only views ------------------------------------------------------------
    def __len__(self) -> int: ...
    def __contains__(self, job_id: object, /) -> bool: ...
    def free_gpus(self) -> int: ...
    def node_free_gpus(self) -> np.ndarray: ...
    def rack_power_w(self) -> np.ndarray: ...
    def row_slack_units(self) -> np.ndarray: ...
    def row_limit_units(self) -> np.ndarray: ...
    def node_state_codes(self) -> np.ndarray: ...
    def placements(self) -> "list[Placement]": ...
    def jobs(self) -> "list[Job]": ...
    def placement(self, job_id: str) -> "Placement": ...
    def job(self, job_id: str) -> "Job": ...
    def _index_state(self) -> dict[str, Any]: ...


#: The method names of the contract, for the run-time check in the tests.
CORE_METHODS = (
    "place", "release", "place_many", "release_many", "_search", "_reset", "_insert",
    "_replace", "_reshape", "_set_node_state", "_set_limit_units", "_jobs_on", "__len__",
    "__contains__", "free_gpus", "node_free_gpus", "rack_power_w", "row_slack_units",
    "row_limit_units", "node_state_codes", "placements", "jobs", "placement", "job",
    "_index_state",
)


if TYPE_CHECKING:
    # mypy proves here that both twins meet the contract: an assignment that fails to
    # type-check names the twin and the member that differs.
    from . import _engine_c, _engine_py

    def _check_twins(cluster: "Cluster") -> None:
        python_core: EngineCoreAPI = _engine_py.EngineCore(cluster)
        compiled_core: EngineCoreAPI = _engine_c.EngineCore(cluster)
        del python_core, compiled_core
