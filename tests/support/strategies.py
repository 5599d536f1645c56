"""Hypothesis strategies shared by the differential, stateful and fuzz tests."""

from __future__ import annotations

from hypothesis import strategies as st

from gpusched import Cluster, Job

NODE_IDLE_W = 1550 + 8 * 65
NODE_FULL_W = 2800 + 8 * 700


@st.composite
def power_models(draw):
    """A power-model table other than the H100 default: node size, cap grid, idle draws.

    Caps stay in [200, 700] W so drawn jobs keep fitting the cap range.
    """
    gpus = draw(st.sampled_from([1, 2, 4, 8, 16, 64]))
    other_idle = draw(st.sampled_from([0, 400, 1550]))
    return {"gpus_per_node": gpus, "cap_step_w": draw(st.sampled_from([1, 10, 25, 50, 100])),
            "gpu_idle_w": draw(st.sampled_from([0, 65, 150])),
            "node_other_idle_w": other_idle,
            "node_other_busy_w": other_idle + draw(st.sampled_from([0, 1, 1250]))}


@st.composite
def cluster_specs(draw, max_pods: int = 6, max_racks_per_pod: int = 4,
                  max_nodes_per_rack: int = 8, spread_tightness: bool = False,
                  vary_power: bool = False):
    """A valid spec dict: 1..max_pods pods, liquid and air racks, loose to tight limits.

    Each limit is idle power plus a drawn fraction (0.05 to 1.3) of the headroom full
    power would need, so some clusters take everything and some almost nothing.  With
    many limits the tightest one is usually near 0.05; ``spread_tightness=True`` first
    draws a floor for the fraction (0.05, 0.3, 0.6 or 0.9), so loose clusters where big
    gangs fit come up as often as tight ones.
    ``vary_power=True`` sometimes draws a power model other than the H100 default
    (1 to 64 GPUs per node, cap steps of 1 to 100 W, other idle draws).
    """
    n_pods = draw(st.integers(1, max_pods))
    n_halls = draw(st.integers(1, min(2, n_pods)))
    floor = draw(st.sampled_from([0.05, 0.3, 0.6, 0.9])) if spread_tightness else 0.05
    tightness = st.floats(floor, 1.3)
    spec = {"name": "drawn", "halls": [], "rows": [], "pods": [], "racks": []}
    node_idle_w, node_full_w = NODE_IDLE_W, NODE_FULL_W
    if vary_power and draw(st.booleans()):
        power = draw(power_models())
        spec["power"] = power
        G = power["gpus_per_node"]
        node_idle_w = power["node_other_idle_w"] + G * power["gpu_idle_w"]
        node_full_w = power["node_other_busy_w"] + G * 700
    hall_idle = [0.0] * n_halls
    hall_full = [0.0] * n_halls
    for p in range(n_pods):
        hall = p % n_halls
        spec["pods"].append({"name": f"pod-{p}"})
        row_idle = row_full = 0.0
        row_racks = []
        for r in range(draw(st.integers(1, max_racks_per_pod))):
            nodes = draw(st.integers(1, max_nodes_per_rack))
            idle, full = nodes * node_idle_w, nodes * node_full_w
            feed = idle + draw(tightness) * (full - idle)
            rack = {"name": f"rack-{p}-{r}", "row": f"row-{p}", "pod": f"pod-{p}",
                    "nodes": nodes, "feed_w": round(feed)}
            if draw(st.booleans()):
                rack.update(kind="liquid", liquid_fraction=0.88,
                            cdu_w=round(0.88 * (idle + draw(tightness) * (full - idle))) + 1,
                            residual_air_w=round(0.12 * (idle + draw(tightness) * (full - idle))) + 1)
            else:
                rack.update(kind="air",
                            air_cooling_w=round(idle + draw(tightness) * (full - idle)))
            row_racks.append(rack)
            row_idle += idle
            row_full += full
        spec["racks"].extend(row_racks)
        spec["rows"].append({"name": f"row-{p}", "hall": f"hall-{hall}",
                             "busway_w": round(row_idle + draw(tightness) * (row_full - row_idle))})
        hall_idle[hall] += row_idle
        hall_full[hall] += row_full
    for h in range(n_halls):
        spec["halls"].append({
            "name": f"hall-{h}",
            "switchboard_w": round(hall_idle[h] + draw(tightness) * (hall_full[h] - hall_idle[h])),
            "cooling_w": round(hall_idle[h] + draw(tightness) * (hall_full[h] - hall_idle[h]))})
    idle, full = sum(hall_idle), sum(hall_full)
    spec["facility"] = {"it_limit_w": round(idle + draw(tightness) * (full - idle))}
    return spec


def clusters(**kwargs):
    return cluster_specs(**kwargs).map(Cluster.from_dict)


@st.composite
def jobs(draw, job_id: str, max_gpus: int = 64, gpus_per_node: int = 8):
    """A valid job: 1..G GPUs, or whole nodes up to max_gpus; flexible caps."""
    G = gpus_per_node
    if draw(st.booleans()):
        gpus = draw(st.integers(1, G))
    else:
        gpus = G * draw(st.integers(2, max(2, max_gpus // G)))
    max_cap = draw(st.sampled_from([700, 700, 650, 500]))
    min_cap = draw(st.one_of(st.none(), st.integers(200, max_cap)))
    return Job(job_id, gpus, max_cap_w=max_cap, min_cap_w=min_cap,
               weight=draw(st.sampled_from([1.0, 2.0])))
