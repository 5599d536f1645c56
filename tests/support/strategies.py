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


# ---- wide specs: every field across its whole documented range -----------------------

def _ends(lo, hi, *inside):
    """Both ends of a range (and just inside them) as often as anything in between."""
    ends = sorted({lo, hi, *inside})
    whole = (st.integers(lo, hi) if isinstance(lo, int) and isinstance(hi, int)
             else st.floats(lo, hi, allow_nan=False))
    return st.one_of(st.sampled_from(ends), whole)


#: Documented ranges (docs/cluster-format.md, gpusched.power): watts of the power model
#: in [0, 1e6], gpus_per_node in [1, 64], nodes per rack in [1, 1024], limits in
#: [0, 1e12] W, coefficients in [0, 1000] in steps of 1e-6.
POWER_W = _ends(0, 1_000_000, 1, 999_999)
NODES = _ends(1, 1024, 2, 1023)
LIMIT_W = _ends(0.0, 1e12, 1.0, 1e12 - 1)
COEFFICIENT = st.one_of(st.sampled_from([0.0, 1e-6, 1.0, 999.999999, 1000.0]),
                        st.integers(0, 1000 * 10**6).map(lambda u: u / 10**6))

#: Names from all of Unicode, surrogates and line separators included, plus plain ones.
ANY_TEXT = st.text(st.characters(exclude_categories=()), min_size=1, max_size=12)
AWKWARD = st.sampled_from(["\ud800", "a\udfffb", "x\u2028y", "x\u2029", "\x85", "a\nb",
                           "\x1c", "\x0c", "\x00", "\x7f", "é", "🙂", " ", "[", "\""])
NAMES = st.one_of(st.sampled_from(["a", "b", "c"]), ANY_TEXT, AWKWARD,
                  st.tuples(ANY_TEXT, AWKWARD).map("".join))


@st.composite
def wide_specs(draw, max_racks: int = 24):
    """A spec dict drawn across every field's whole range; often one the validator refuses.

    Numbers come from both ends of their ranges and the products that bound a row's load
    (racks x nodes x node power x coefficient) reach past int64; names come from all of
    Unicode; a rack's explicit node names may repeat another rack's default ones.
    """
    power = {key: draw(POWER_W) for key in ("gpu_tdp_w", "cap_min_w", "cap_max_w",
                                            "cap_step_w", "gpu_idle_w", "node_other_idle_w",
                                            "node_other_busy_w")
             if draw(st.booleans())}
    if draw(st.booleans()):
        power["gpus_per_node"] = draw(_ends(1, 64, 2, 63))
    if draw(st.integers(0, 3)):
        # most draws keep the power model's own relations, so the rest of the spec is
        # reached: gpu_idle_w < cap_min_w <= cap_max_w <= gpu_tdp_w, idle <= busy
        chain = sorted(draw(st.lists(POWER_W, min_size=4, max_size=4)))
        chain[1] = max(chain[1], chain[0] + 1)
        chain[2], chain[3] = max(chain[2], chain[1]), max(chain[3], chain[2], chain[1])
        if chain[3] <= 1_000_000:
            power.update(gpu_idle_w=chain[0], cap_min_w=chain[1], cap_max_w=chain[2],
                         gpu_tdp_w=chain[3])
        other = sorted(draw(st.lists(POWER_W, min_size=2, max_size=2)))
        power.update(node_other_idle_w=other[0], node_other_busy_w=other[1],
                     cap_step_w=max(1, draw(POWER_W)))
    loose = draw(st.booleans())  # every limit at the top of its range: the spec validates
    LIMIT = st.just(1e12) if loose else LIMIT_W  # noqa: N806 - a strategy, like the others
    n_racks = draw(st.integers(1, max_racks))
    n_pods = draw(st.integers(1, n_racks))
    odd_names = draw(st.booleans())  # half the specs keep plain names, so more validate
    name = (lambda default: draw(NAMES) if odd_names and draw(st.integers(0, 9)) == 0
            else default)
    pods = [{"name": name(f"pod-{p}")} for p in range(n_pods)]
    halls = [{"name": name("hall"), "switchboard_w": draw(LIMIT)}]
    if draw(st.booleans()):
        halls[0]["cooling_w"] = draw(LIMIT)
    rows = [{"name": name("row"), "hall": halls[0]["name"], "busway_w": draw(LIMIT)}]
    racks = []
    for r in range(n_racks):
        rack = {"name": name(f"r{r}"), "row": rows[0]["name"],
                "pod": pods[min(r, n_pods - 1)]["name"], "nodes": draw(NODES),
                "feed_w": draw(LIMIT)}
        if draw(st.booleans()):
            rack.update(kind="air", air_cooling_w=draw(LIMIT))
        else:
            rack.update(kind="liquid", cdu_w=draw(LIMIT), residual_air_w=draw(LIMIT),
                        liquid_fraction=draw(st.sampled_from([0.0, 0.88, 1.0])))
        racks.append(rack)
    # explicit names: sometimes another rack's default names, sometimes drawn text
    explicit = draw(st.sampled_from([0, 0, 1, 2]))  # none, a few, most racks
    for r, rack in enumerate(racks):
        if explicit == 0:
            break
        choice = draw(st.integers(0, 5)) if explicit == 2 else draw(st.integers(0, 40))
        if choice == 0 and r > 0:
            other = racks[draw(st.integers(0, r - 1))]
            rack["node_names"] = [f"{other['name']}-n{i}" for i in range(rack["nodes"])]
        elif choice == 1 and rack["nodes"] <= 16:
            rack["node_names"] = [draw(NAMES) for _ in range(rack["nodes"])]
    limits = []
    for j in range(draw(st.integers(0, 2))):
        chosen = draw(st.lists(st.sampled_from([r["name"] for r in racks]), min_size=1,
                               max_size=n_racks, unique=True))
        limits.append({"name": name(f"limit-{j}"), "limit": draw(LIMIT),
                       "coefficients": {k: draw(COEFFICIENT) for k in chosen}})
    return {"name": name("wide"), "power": power,
            "facility": {"it_limit_w": draw(LIMIT)}, "halls": halls, "rows": rows,
            "pods": pods, "racks": racks, "limits": limits}


def reordered(spec: dict, order: list[int]) -> dict:
    """The same spec with its racks in ``order`` (a permutation): the same topology."""
    out = dict(spec)
    out["racks"] = [spec["racks"][i] for i in order]
    return out
