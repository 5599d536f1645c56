"""An independent check of an engine's live state, written from DESIGN.md.

It imports no engine code: from the live placements alone it recomputes GPU use per
node and power per rack (node power = other (idle or busy) + 65 W per free GPU + the
cap of each busy GPU), and asserts GPU capacity and every row of A·P <= b.  Only the
cluster's spec arrays and the constraint system are read.
"""

from __future__ import annotations

from fractions import Fraction


def recompute(cluster, placements, states=None, spare_cap_w=None):
    """Return (gpus used per node, rack power in W) from the placements alone.

    ``states`` (one code a node: 0 up, 1 draining, 2 down, 3 spare) adds what DESIGN.md
    says a node that is not up draws: a down node ``node_down_w``, a spare its busy
    power at ``spare_cap_w``.
    """
    power = cluster.power
    G = power.gpus_per_node
    used = [0] * cluster.num_nodes
    cap_sum = [0] * cluster.num_nodes
    for p in placements:
        for n in p.nodes:
            used[n] += p.gpus_per_node
            cap_sum[n] += p.gpus_per_node * p.cap_w
    rack_power = [0] * cluster.num_racks
    node_rack = cluster.node_rack.tolist()
    for n in range(cluster.num_nodes):
        state = 0 if states is None else int(states[n])
        if state == 2:
            node_w = power.node_down_w
        elif state == 3:
            node_w = power.node_other_busy_w + G * spare_cap_w
        else:
            other = power.node_other_busy_w if used[n] else power.node_other_idle_w
            node_w = other + (G - used[n]) * power.gpu_idle_w + cap_sum[n]
        rack_power[node_rack[n]] += node_w
    return used, rack_power


def check_engine(engine, allow_over=False):
    """Assert the engine's state is physically valid and self-consistent.

    Rows are held against the engine's live limits; a row over its live limit (after a
    limit was lowered, or a down node restored) passes only with ``allow_over`` and only
    if ``engine.violations()`` names exactly the rows over.
    """
    cluster = engine.cluster
    placements = engine.placements()
    states = engine.node_states().tolist()
    policy = engine.spares().policy
    used, rack_power = recompute(cluster, placements, states,
                                 policy.cap_w if policy is not None else None)
    G = cluster.power.gpus_per_node
    over = [n for n, u in enumerate(used) if u > G]
    assert not over, f"nodes over-committed: {over[:5]}"
    for p in placements:
        assert cluster.power.cap_min_w <= p.cap_w <= cluster.power.cap_max_w
        if len(p.nodes) > 1 or p.gpus_per_node == G:
            assert p.gpus_per_node == G
        bad = [n for n in p.nodes if states[n] in (2, 3)]
        assert not bad, f"job {p.job_id!r} sits on nodes that are down or spare: {bad}"
    assert policy is not None or 3 not in states, "spare nodes without a spare policy"
    # Exact arithmetic: every coefficient is a multiple of 1e-6, so Fractions are exact.
    A = cluster.constraints.A.tocsr()
    limits = [Fraction(int(u), 10**6) for u in engine.row_limit_units()]
    names = cluster.constraints.names
    rows_over = []
    for i in range(A.shape[0]):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        load = sum(Fraction(round(float(A.data[k]) * 10**6), 10**6) * rack_power[A.indices[k]]
                   for k in range(lo, hi))
        if load > limits[i]:
            rows_over.append(names[i])
            assert allow_over, f"row {names[i]!r} broken: {float(load)} > {float(limits[i])}"
    assert rows_over == [name for name, _load, _limit in engine.violations()]
    # the engine's own views agree with the recomputation
    assert list(engine.rack_power_w()) == rack_power
    assert [G - u for u in used] == list(engine.node_free_gpus())
    assert engine.free_gpus() == cluster.num_gpus - sum(used)
    return rack_power
