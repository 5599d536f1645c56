"""Slurm adapter: topology.conf (tree and block), the power overlay, hostlists."""

from __future__ import annotations

import itertools
import re
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpusched
import gpusched.hostlist
from gpusched.adapters import slurm
from gpusched.adapters.slurm import (cluster_from_topology, compress_hostlist,
                                     expand_hostlist, hostlist_size, load_overlay,
                                     parse_topology, placement_nodelist, read_cluster,
                                     read_topology)
from gpusched.errors import SpecError
from tests.support.verify import check_engine

SLURM = Path(__file__).parent / "fixtures" / "slurm"


# ---- hostlists ----------------------------------------------------------------------

@pytest.mark.parametrize("expr, names", [
    ("tux[0-3,12,18-20]", ["tux0", "tux1", "tux2", "tux3", "tux12", "tux18", "tux19",
                           "tux20"]),
    ("gpu[0001-0003]", ["gpu0001", "gpu0002", "gpu0003"]),
    ("gpu[0998-1001]", ["gpu0998", "gpu0999", "gpu1000", "gpu1001"]),
    ("s[01-02],login", ["s01", "s02", "login"]),
    ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
    ("node7", ["node7"]),
    ("a[1-2]-ib", ["a1-ib", "a2-ib"]),
])
def test_expand_hostlist(expr, names):
    assert expand_hostlist(expr) == names


@pytest.mark.parametrize("expr", ["", "gpu[1-3", "gpu]1[", "gpu[3-1]", "gpu[a-b]",
                                  "gpu[1-2],,x", "gpu[[1-2]]", "gpu[1-]", "g pu1"])
def test_expand_hostlist_refuses_malformed_expressions(expr):
    with pytest.raises(ValueError):
        expand_hostlist(expr)


@pytest.mark.parametrize("names, expr", [
    (["gpu0001", "gpu0002", "gpu0003", "gpu0007"], "gpu[0001-0003,0007]"),
    (["gpu0999", "gpu1000"], "gpu[0999-1000]"),
    (["n3", "n1", "n2", "n10"], "n[1-3,10]"),
    (["dgx0005"], "dgx0005"),
    (["a1-ib", "a2-ib", "login"], "login,a[1-2]-ib"),
])
def test_compress_hostlist(names, expr):
    assert compress_hostlist(names) == expr


host_names = st.builds(
    lambda prefix, number, width, suffix: f"{prefix}{str(number).zfill(width)}{suffix}",
    st.sampled_from(["gpu", "dgx", "r1n", "node-"]), st.integers(0, 1200),
    st.sampled_from([0, 2, 4]), st.sampled_from(["", "-ib"]))


@given(st.lists(host_names, min_size=1, max_size=60))
def test_compress_then_expand_gives_the_same_hosts(names):
    expr = compress_hostlist(names)
    expanded = expand_hostlist(expr)
    assert sorted(expanded) == sorted(set(names))
    assert len(expanded) == len(set(names))  # no name twice


# ---- hostlists: counted before they are expanded (issue 13, finding 13) ---------------

def peak_bytes(call, *args, **kwargs):
    """(result or raised error, peak bytes Python allocated while ``call`` ran)."""
    tracemalloc.start()
    try:
        try:
            outcome = call(*args, **kwargs)
        except Exception as exc:  # the caller checks what was raised
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# A name of a dozen characters costs about 60 bytes as a str plus 8 in its list; a
# refusal may hold the parsed expression, a few hundred bytes per range.
def name_bytes_bound(hosts: int, expr: str) -> int:
    return 128 * hosts + 256 * len(expr) + 64 * 1024


@pytest.mark.parametrize("expr, hosts", [
    ("a[1-1999999]b[1-1999999]", 1999999 ** 2),        # the 24-byte cross product
    ("g[" + ",".join(["1-1999999"] * 8) + "]", 8 * 1999999),   # a bracket's ranges summed
    ("g[1-1000000],h[1-1000000],i[1]", 2_000_001),     # the parts summed
    ("a[1-2000]b[1-2000]c[1-2000]", 2000 ** 3),
])
def test_a_hostlist_past_the_bound_is_refused_before_it_is_built(expr, hosts):
    assert hostlist_size(expr) == hosts
    error, peak = peak_bytes(expand_hostlist, expr)
    assert isinstance(error, SpecError), error
    assert f"names {hosts:,} hosts; at most 2,000,000" in str(error)
    assert peak < name_bytes_bound(0, expr)


@pytest.mark.parametrize("expr", [
    "a[1-999]b[1-999]",                                 # the cross product
    "g[" + ",".join(["1-999"] * 60) + "]",              # the sum over one bracket's ranges
    ",".join(f"p{i}[1-999]" for i in range(60)),        # the sum over the parts
])
def test_the_count_comes_first_under_a_small_bound(monkeypatch, expr):
    # The same bug at a size a test can afford on the code before the fix: with a bound
    # of 1,000, that code built 998,001 (then 59,940) names before refusing.
    monkeypatch.setattr(gpusched.hostlist, "MAX_HOSTS", 1000)
    error, peak = peak_bytes(slurm.expand_hostlist, expr)
    assert isinstance(error, SpecError) and "at most 1,000 are read" in str(error), error
    assert peak < name_bytes_bound(0, expr)


def test_a_hostlist_at_the_bound_expands(monkeypatch):
    monkeypatch.setattr(gpusched.hostlist, "MAX_HOSTS", 1000)
    names = slurm.expand_hostlist("r[1-10]n[001-050],login[1-500]")
    assert len(names) == 1000 and names[0] == "r1n001" and names[-1] == "login500"


@pytest.mark.parametrize("expr", ["g[\u00b2]", "g[\u0661-\u0663]", "g[1-\uff13]",
                                  "g[\u0967]", "g[1_0]", "g[ 1]", "g[+1]",
                                  "g[1-1234567890123456789]"])
def test_hostlist_numbers_are_ascii_digits_only(expr):
    # '\u00b2'.isdigit() and int('\u0663') == 3: the code before read these as numbers
    # (or raised int()'s own error); Slurm reads 0-9 only.
    with pytest.raises(SpecError, match="ASCII digits 0-9|at most 18"):
        expand_hostlist(expr)


@pytest.mark.parametrize("expr", ["g\u2028x", "g\x85", "g\x1c1", "g\u00a0x"])
def test_host_names_hold_no_line_breaks_or_blanks(expr):
    with pytest.raises(SpecError, match="bad character"):
        expand_hostlist(expr)


def test_a_name_ending_in_a_unicode_digit_is_not_a_host_number():
    # compress_hostlist wrote "gpu\u0661" as gpu1, another host.
    names = ["gpu\u0661", "gpu1", "gpu2"]
    expr = compress_hostlist(names)
    assert sorted(expand_hostlist(expr)) == sorted(names)


# A brute-force oracle: expand the first bracket of a text by substitution, recursively.
# It shares no code with the importer and is only asked about small expressions.
def oracle_expand(expr: str) -> list[str]:
    names: list[str] = []
    depth, start = 0, 0
    parts = []
    for i, ch in enumerate(expr + ","):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(expr[start:i])
            start = i + 1
    for part in parts:
        names.extend(oracle_expand_part(part))
    return names


def oracle_expand_part(part: str) -> list[str]:
    open_at = part.find("[")
    if open_at < 0:
        return [part]
    close_at = part.index("]", open_at)
    head, body, tail = part[:open_at], part[open_at + 1:close_at], part[close_at + 1:]
    out = []
    for item in body.split(","):
        lo, _, hi = item.partition("-")
        hi = hi or lo
        pad = len(lo) if lo[0] == "0" and len(lo) > 1 else 1
        for n in range(int(lo), int(hi) + 1):
            for rest in oracle_expand_part(tail):
                out.append(f"{head}{n:0{pad}d}{rest}")
    return out


NON_ASCII_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not "0" <= c <= "9")


@st.composite
def hostlist_exprs(draw):
    """(expression, must be refused, how many names it stands for).

    Ranges run from one name to 10**15; a part holds up to three brackets (their cross
    product), a bracket up to six ranges (their sum); numbers carry zero padding.  One
    expression in five has one number broken: a non-ASCII digit in place of one of its
    digits, or a range run backwards.  The count is exact arithmetic, so only small
    expressions are ever expanded by the oracle.
    """
    huge_share = draw(st.sampled_from([0, 0, 1, 3]))    # in 10, per range
    brackets: list[list[list[str]]] = []                  # per part: brackets of ranges
    size = 0
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        pieces = [draw(st.sampled_from(["gpu", "n", "r", "dgx-", "a.b", "x_"]))]
        part_size = 1
        for _ in range(draw(st.integers(0, 3))):
            ranges, bracket_size = [], 0
            for _ in range(draw(st.integers(1, 6))):
                huge = draw(st.integers(0, 9)) < huge_share
                lo = draw(st.integers(0, 10**15 if huge else 30))
                hi = lo + draw(st.integers(0, 10**15 if huge else 4))
                lo_text = str(lo).zfill(draw(st.sampled_from([0, 0, 2, 4])))
                if lo == hi and draw(st.booleans()):
                    ranges.append([lo_text])
                else:
                    ranges.append([lo_text, str(hi)])
                bracket_size += hi - lo + 1
            pieces.append(ranges)
            part_size *= bracket_size
            if draw(st.booleans()):
                pieces.append(draw(st.sampled_from(["n", "-ib", "s"])))
        parts.append(pieces)
        size += part_size
    numbers = [r for pieces in parts for piece in pieces if isinstance(piece, list)
               for r in piece]
    flaw = draw(st.sampled_from(["none"] * 8 + ["unicode", "backwards"])) if numbers \
        else "none"
    if flaw == "unicode":
        rng = draw(st.sampled_from(numbers))
        end = draw(st.integers(0, len(rng) - 1))
        at = draw(st.integers(0, len(rng[end]) - 1))
        rng[end] = rng[end][:at] + draw(NON_ASCII_DIGITS) + rng[end][at + 1:]
    elif flaw == "backwards":
        rng = draw(st.sampled_from(numbers))
        rng[:] = [str(int(rng[0]) + 1), str(int(rng[0]))]
    text = ",".join("".join(p if isinstance(p, str) else
                            "[" + ",".join("-".join(r) for r in p) + "]" for p in pieces)
                    for pieces in parts)
    return text, flaw != "none", size


@given(hostlist_exprs())
def test_fuzz_hostlists_expand_right_or_are_refused_within_the_bound(drawn):
    expr, bad, size = drawn
    bound = 300
    result, peak = peak_bytes(expand_hostlist, expr, max_hosts=bound)
    if bad or size > bound:
        assert isinstance(result, SpecError), (expr, result)
    else:
        assert result == oracle_expand(expr), expr
        assert hostlist_size(expr) == size
    # never more than the bound's worth of names, whatever the expression claims
    assert peak < name_bytes_bound(min(size, bound), expr), (expr, peak)


# ---- topology.conf ------------------------------------------------------------------

def test_tree_topology_leaves_are_pods():
    topology = read_topology(SLURM / "tree.conf")
    assert topology.plugin == "tree"
    assert list(topology.pods) == ["su01", "su02"]
    assert topology.pods["su01"] == [f"dgx{i:04d}" for i in range(1, 33)]
    assert topology.switches == {"spine01": ["su01", "su02"]}


def test_block_topology_blocks_are_pods():
    topology = read_topology(SLURM / "block.conf")
    assert topology.plugin == "block" and topology.block_sizes == [16, 32]
    assert [len(v) for v in topology.pods.values()] == [16, 16, 16, 16]
    assert "blk-c" in topology.pods  # the lower-case line


@pytest.mark.parametrize("text, line, words", [
    ("SwitchName=s1 Nodes=n[1-4]\nSwitchName=s2 Nodes=n[5-8\n", 2, "without ']'"),
    ("SwitchName=s1 Nodes=n[1-4] Speed=100\n", 1, "unknown parameter"),
    ("SwitchName=s1 Nodes n[1-4]\n", 1, "is not Key=Value"),
    ("# header\n\nSwitchName=s1 Nodes=n[1-4]\nSwitchName=s1 Nodes=n[5-8]\n", 4,
     "defined twice"),
    ("SwitchName=s1 Nodes=n[1-4]\nSwitchName=s2 Nodes=n[4-8]\n", 2, "already under 's1'"),
    ("SwitchName=s1 Nodes=n[1-4]\nSwitchName=top Switches=s[1-2]\n", 2, "'s2', which is "
                                                                        "not defined"),
    ("SwitchName=s1 Nodes=n[1-4]\nBlockName=b1 Nodes=n[5-8]\n", 2, "mixes"),
    ("BlockName=b1 Nodes=n[1-4]\nBlockSizes=4,6\n", 2, "power-of-two"),
    ("BlockName=b1 Nodes=n[1-4]\nBlockSizes=4\nBlockSizes=4\n", 3, "twice"),
    ("BlockName=b1 Nodes=n[1-4]\nBlockSizes=four\n", 2, "whole numbers"),
    ("Nodes=n[1-4]\n", 1, "must start a switch"),
    ("SwitchName=s1 Nodes=n[1-4] LinkSpeed=fast\n", 1, "LinkSpeed"),
    ("SwitchName=s1 Nodes=n[1-4] Switches=s2\nSwitchName=s2 Nodes=m1\n", 1, "not both"),
    ("SwitchName=s1\n", 1, "lists no Nodes"),
    ("SwitchName=s1 nodes=n1 NODES=n2\n", 1, "given twice"),
    ("SwitchName=s/1 Nodes=n1\n", 1, "characters"),
    ("# nothing but comments\n", 0, "no SwitchName"),
])
def test_malformed_lines_name_their_line(text, line, words):
    with pytest.raises(SpecError, match=words) as info:
        parse_topology(text, source="topology.conf")
    assert info.value.field == f"line {line}"


def test_malformed_fixture_file():
    with pytest.raises(SpecError, match="runs backwards") as info:
        read_topology(SLURM / "malformed_tree.conf")
    assert info.value.field == "line 4"


# ---- topology.conf: lines end at '\n' only (issue 13, finding 18) ---------------------

# Every character str.splitlines() breaks at, but '\n': Slurm's fgets() ends a line at
# '\n' alone, so after any of these a '#' comment goes on.
LINE_BREAKS_BUT_NEWLINE = ["\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
                           "\u2029"]


@pytest.mark.parametrize("brk", LINE_BREAKS_BUT_NEWLINE, ids=repr)
def test_a_line_break_inside_a_comment_keeps_the_comment_going(brk):
    text = ("SwitchName=s1 Nodes=n[1-4]\n"
            f"# retired:{brk}SwitchName=ghost Nodes=g[1-4]\n"
            "SwitchName=s2 Nodes=n[5-8]\n"
            "SwitchName=s3 Nodes=n[8-9]\n")
    with pytest.raises(SpecError, match="already under 's2'") as info:
        parse_topology(text)
    assert info.value.field == "line 4"   # the physical line, not one per break
    topology = parse_topology(text.rsplit("SwitchName=s3", 1)[0])
    assert list(topology.pods) == ["s1", "s2"]   # no ghost pod


def test_a_file_with_a_lone_carriage_return_in_a_comment(tmp_path):
    # read_text() turned a lone '\r' into a line break before the parser saw it.
    path = tmp_path / "topology.conf"
    path.write_bytes(b"SwitchName=s1 Nodes=n[1-4]  # spare:\rSwitchName=s9 Nodes=m1\r\n"
                     b"SwitchName=s2 Nodes=n[5-8]\r\n")
    assert list(read_topology(path).pods) == ["s1", "s2"]


@pytest.mark.parametrize("text", ["SwitchName=s1\u2028Nodes=n1\n",
                                  "SwitchName=s1 Nodes=n1\x85Switches=s2\n"])
def test_only_ascii_blanks_separate_parameters(text):
    with pytest.raises(SpecError) as info:
        parse_topology(text)
    assert info.value.field == "line 1"


@pytest.mark.parametrize("text, line, cycle", [
    ("SwitchName=a Switches=a\nSwitchName=l Nodes=n1\n", 1, "a -> a"),
    ("SwitchName=l Nodes=n1\nSwitchName=a Switches=b,l\nSwitchName=b Switches=a\n", 3,
     "a -> b -> a"),
    ("SwitchName=l Nodes=n1\nSwitchName=t Switches=a\nSwitchName=a Switches=b\n"
     "SwitchName=b Switches=c\nSwitchName=c Switches=a,l\n", 5, "a -> b -> c -> a"),
])
def test_switch_cycles_are_refused(text, line, cycle):
    with pytest.raises(SpecError, match=f"form a cycle {cycle} ") as info:
        parse_topology(text)
    assert info.value.field == f"line {line}"


def test_two_spines_over_one_leaf_are_no_cycle():
    topology = parse_topology("SwitchName=l Nodes=n[1-2]\nSwitchName=a Switches=l\n"
                              "SwitchName=b Switches=l\nSwitchName=top Switches=a,b\n")
    assert topology.switches["top"] == ["a", "b"]


@pytest.mark.parametrize("text, words", [
    ("BlockName=b1 Nodes=n[1-4]\nBlockSizes=\uff14\n", "ASCII digits"),
    ("BlockName=b1 Nodes=n[1-4]\nBlockSizes=4_0\n", "ASCII digits"),
    ("SwitchName=s1 Nodes=n[1-4] LinkSpeed=\u0661\u0660\n", "ASCII digits"),
])
def test_topology_numbers_are_ascii_digits_only(text, words):
    with pytest.raises(SpecError, match=words) as info:
        parse_topology(text)
    assert info.value.field == f"line {text.count(chr(10))}"


def test_the_whole_file_shares_one_host_budget(monkeypatch):
    # Each line under the bound, the lines together past it: refused before the third
    # line's names are built.
    monkeypatch.setattr(gpusched.hostlist, "MAX_HOSTS", 100)
    text = "".join(f"SwitchName=s{i} Nodes=p{i}n[1-40]\n" for i in range(3))
    with pytest.raises(SpecError, match="with the 80 of the lines above is more than 100"
                       ) as info:
        slurm.parse_topology(text)
    assert info.value.field == "line 3"
    assert len(slurm.parse_topology(text.rsplit("SwitchName=s2", 1)[0]).node_names) == 80


@pytest.mark.parametrize("lists, field", [
    ("rack_groups", "overlay.rack_groups[1].nodes"),
    ("rows", "overlay.rows[1].nodes"),
])
def test_the_overlay_hostlists_share_a_host_budget(monkeypatch, tree_overlay, lists, field):
    monkeypatch.setattr(gpusched.hostlist, "MAX_HOSTS", 100)
    topology = read_topology(SLURM / "tree.conf")
    if lists == "rack_groups":
        overlay = {**tree_overlay, "rack_groups": [{"nodes": "dgx[0001-0064]", "feed_w": 1},
                                                   {"nodes": "dgx[0001-0064]", "feed_w": 2}]}
    else:   # rows may name hosts topology.conf lacks; those count too
        rows = tree_overlay["rows"]
        overlay = with_rows(tree_overlay, [{**rows[0], "nodes": rows[0]["nodes"] + ",x[1-30]"},
                                           {**rows[1], "nodes": rows[1]["nodes"] + ",y[1-30]"}])
    with pytest.raises(SpecError, match="more than 100") as info:
        slurm.cluster_from_topology(topology, overlay)
    assert info.value.field == field


@st.composite
def topology_texts(draw):
    """topology.conf text with comments full of line-break characters, and its meaning.

    Returns (text, pods, bad_line): the leaf switches and their nodes as written, and
    the physical line number of one malformed line, or 0 when there is none.  Comments
    stand on lines of their own and after switch lines; each holds a character from
    LINE_BREAKS_BUT_NEWLINE followed by what would be a live line.
    """
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    breaks = st.sampled_from(LINE_BREAKS_BUT_NEWLINE)
    filler = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=6)

    def comment(k: int) -> str:
        return (f"# {draw(filler)}{draw(breaks)}SwitchName=ghost{k} Nodes=ghost{k}"
                f"{draw(breaks)}{draw(filler)}")

    pods = {f"leaf{i}": [f"p{i}n{j}" for j in range(1, draw(st.integers(1, 4)) + 1)]
            for i in range(draw(st.integers(1, 4)))}
    lines = []
    for k, (name, nodes) in enumerate(pods.items()):
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(["", comment(len(lines))])))
        trailing = " " + comment(100 + k) if draw(st.booleans()) else ""
        lines.append(f"SwitchName={name} Nodes=p{k}n[1-{len(nodes)}]{trailing}")
    if draw(st.booleans()):
        lines.append(f"SwitchName=spine Switches={','.join(pods)}  {comment(200)}")
    bad_line = 0
    if draw(st.booleans()):
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, "SwitchName=broken Nodes=q[3-1]  " + comment(300))
        bad_line = at + 1
    return newline.join(lines) + newline, pods, bad_line


@given(topology_texts())
def test_fuzz_topology_comments_with_every_line_break(drawn):
    text, pods, bad_line = drawn
    if bad_line:
        with pytest.raises(SpecError, match="runs backwards") as info:
            parse_topology(text)
        assert info.value.field == f"line {bad_line}"
    else:
        assert parse_topology(text).pods == pods


# ---- the cluster ----------------------------------------------------------------------

def test_tree_cluster_from_topology_and_overlay(backend):
    cluster = read_cluster(SLURM / "tree.conf", SLURM / "tree_overlay.toml")
    assert (cluster.num_nodes, cluster.num_racks, cluster.num_pods, cluster.num_rows) == (
        64, 16, 2, 2)
    assert cluster.node_names[:2] == ("dgx0001", "dgx0002")
    assert cluster.pod_names == ("su01", "su02")
    assert cluster.rack_names[:2] == ("su01-r1", "su01-r2")
    c = cluster.constraints
    assert c.b[c.row("row-1 busway")] == 320_000 and c.b[c.row("facility IT limit")] == 600_000
    # a spec round trip keeps the Slurm names
    again = gpusched.Cluster.from_dict(cluster.to_dict())
    assert again.node_names == cluster.node_names
    engine = gpusched.Engine(cluster, backend=backend)
    p = engine.place(gpusched.Job("llm", 64, min_cap_w=400))
    nodelist = placement_nodelist(cluster, p)
    assert nodelist == "dgx[0001-0008]"
    assert expand_hostlist(nodelist) == [cluster.node_names[n] for n in p.nodes]
    check_engine(engine)


def test_block_cluster_mixes_liquid_and_air_racks():
    cluster = read_cluster(SLURM / "block.conf", SLURM / "block_overlay.toml")
    assert list(cluster.rack_kind) == [0] * 4 + [1] * 8  # 2 blocks x 2 liquid, 2 x 4 air
    assert cluster.rack_nodes.tolist() == [8] * 4 + [4] * 8
    assert cluster.num_halls == 2 and cluster.num_pods == 4


def test_nodelist_of_scattered_nodes_keeps_padding():
    cluster = read_cluster(SLURM / "tree.conf", SLURM / "tree_overlay.toml")
    assert placement_nodelist(cluster, [0, 1, 2, 9, 40]) == "dgx[0001-0003,0010,0041]"


@pytest.fixture
def tree_overlay():
    return load_overlay(SLURM / "tree_overlay.toml")


def with_rows(overlay, rows):
    return {**overlay, "rows": rows}


@pytest.mark.parametrize("change, field, words", [
    (lambda o: {**o, "colour": 1}, "overlay", "unknown key"),
    (lambda o: {k: v for k, v in o.items() if k != "rows"}, "overlay.rows", "is missing"),
    (lambda o: with_rows(o, [{**o["rows"][0], "nodes": "dgx[0001-0030]"}, o["rows"][1]]),
     "overlay.rows", "in no row"),
    (lambda o: with_rows(o, [{**o["rows"][0], "nodes": "dgx[0001-0034]"},
                             {**o["rows"][1], "nodes": "dgx[0035-0064]"}]),
     "overlay.rows", "spans rows"),
    (lambda o: with_rows(o, [o["rows"][0], {**o["rows"][1], "nodes": "dgx[0032-0064]"}]),
     "overlay.rows[1].nodes", r"also in rows\[0\]"),
    (lambda o: with_rows(o, [{**o["rows"][0], "nodes": "dgx[0001-0032"}, o["rows"][1]]),
     "overlay.rows[0].nodes", "without"),
    (lambda o: {**o, "rack_groups": [{"nodes": "cpu[1-2]", "feed_w": 1}]},
     "overlay.rack_groups[0].nodes", "not in"),
    (lambda o: {**o, "racks": {**o["racks"], "nodes_per_rack": 0}},
     "overlay.racks.nodes_per_rack", ">= 1"),
    (lambda o: {**o, "racks": {**o["racks"], "feed_w": -5}}, "racks[0].feed_w", ">= 0"),
    (lambda o: with_rows(o, [{**o["rows"][0], "hall": "hall-z"}, o["rows"][1]]),
     "rows[0].hall", "hall-z"),
])
def test_bad_overlays_name_the_field(tree_overlay, change, field, words):
    topology = read_topology(SLURM / "tree.conf")
    with pytest.raises(SpecError, match=words) as info:
        cluster_from_topology(topology, change(tree_overlay))
    assert info.value.field == field


def test_overlay_that_is_not_toml(tmp_path):
    bad = tmp_path / "overlay.toml"
    bad.write_text("[facility\nit_limit_w = 1\n")
    with pytest.raises(SpecError, match="invalid TOML"):
        load_overlay(bad)
