"""An independent check of an engine's live state, written from DESIGN.md.

It imports no engine code: from the live placements alone it recomputes GPU use per
node and power per rack (node power = other (idle or busy) + 65 W per free GPU + the
cap of each busy GPU), and asserts GPU capacity and every row of A·P <= b.  Only the
cluster's spec arrays and the constraint system are read.
"""

from __future__ import annotations

from fractions import Fraction


def recompute(cluster, placements):
    """Return (gpus used per node, rack power in W) from the placements alone."""
    power = cluster.power
    used = [0] * cluster.num_nodes
    cap_sum = [0] * cluster.num_nodes
    for p in placements:
        for n in p.nodes:
            used[n] += p.gpus_per_node
            cap_sum[n] += p.gpus_per_node * p.cap_w
    rack_power = [0] * cluster.num_racks
    node_rack = cluster.node_rack.tolist()
    for n in range(cluster.num_nodes):
        other = power.node_other_busy_w if used[n] else power.node_other_idle_w
        node_w = other + (power.gpus_per_node - used[n]) * power.gpu_idle_w + cap_sum[n]
        rack_power[node_rack[n]] += node_w
    return used, rack_power


def check_engine(engine):
    """Assert the engine's state is physically valid and self-consistent."""
    cluster = engine.cluster
    placements = engine.placements()
    used, rack_power = recompute(cluster, placements)
    G = cluster.power.gpus_per_node
    over = [n for n, u in enumerate(used) if u > G]
    assert not over, f"nodes over-committed: {over[:5]}"
    for p in placements:
        assert cluster.power.cap_min_w <= p.cap_w <= cluster.power.cap_max_w
        if len(p.nodes) > 1 or p.gpus_per_node == G:
            assert p.gpus_per_node == G
    # Exact arithmetic: every coefficient is a multiple of 1e-6, so Fractions are exact.
    A = cluster.constraints.A.tocsr()
    b = cluster.constraints.b
    for i in range(A.shape[0]):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        load = sum(Fraction(round(float(A.data[k]) * 10**6), 10**6) * rack_power[A.indices[k]]
                   for k in range(lo, hi))
        assert load <= Fraction(b[i]), (
            f"row {cluster.constraints.names[i]!r} broken: {float(load)} > {b[i]}")
    # the engine's own views agree with the recomputation
    assert list(engine.rack_power_w()) == rack_power
    assert [G - u for u in used] == list(engine.node_free_gpus())
    assert engine.free_gpus() == cluster.num_gpus - sum(used)
    return rack_power
