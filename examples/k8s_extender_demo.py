"""What kube-scheduler does with the gpusched extender, replayed by hand.

Starts ``gpusched serve`` on 127.0.0.1 on a cluster read from examples/slurm (so node
names are host names), then sends the extender calls kube-scheduler makes for a 4-pod
gang, in its exact JSON shapes (the Go field names of k8s.io/kube-scheduler/extender/v1):
filter and prioritize for each pod, then bind.

    python examples/k8s_extender_demo.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent


def post(base: str, verb: str, body: dict) -> object:
    request = urllib.request.Request(f"{base}/v1/k8s/{verb}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


def pod(name: str) -> dict:
    """A v1.Pod as kube-scheduler sends it (trimmed to what matters here)."""
    return {"metadata": {"name": name, "namespace": "training", "uid": f"uid-{name}",
                         "annotations": {"gpusched.io/gang-name": "llama-70b",
                                         "gpusched.io/gang-size": "4",
                                         "gpusched.io/min-cap-w": "450"}},
            "spec": {"containers": [{"name": "trainer", "resources": {
                "limits": {"nvidia.com/gpu": "8"}}}]}}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site.json"
        from gpusched.adapters.slurm import read_cluster
        read_cluster(HERE / "slurm" / "topology.conf", HERE / "slurm" / "power.toml").save(site)
        server = subprocess.Popen([sys.executable, "-m", "gpusched.cli", "serve", "--cluster",
                                   str(site), "--state", str(Path(tmp) / "state"),
                                   "--port", "0"], stdout=subprocess.PIPE, text=True)
        try:
            base = server.stdout.readline().rsplit("listening on ", 1)[1].split()[0]
            candidates = [f"gpu{i:04d}" for i in range(1, 13)]
            for i in range(4):
                name = f"llama-70b-{i}"
                args = {"Pod": pod(name), "Nodes": None, "NodeNames": candidates}
                result = post(base, "filter", args)
                scores = post(base, "prioritize", args)
                best = max(scores, key=lambda s: (s["Score"], -candidates.index(s["Host"])))
                bound = post(base, "bind", {"PodName": name, "PodNamespace": "training",
                                            "PodUID": f"uid-{name}", "Node": best["Host"]})
                print(f"{name}: filter passed {result['NodeNames']}, "
                      f"{len(result['FailedNodes'])} failed; bind to {best['Host']} -> "
                      f"{bound}")
            with urllib.request.urlopen(f"{base}/v1/k8s/gangs") as reply:
                gang = json.load(reply)["gangs"][0]
            print(f"gang {gang['gang']}: complete={gang['complete']}, cap {gang['cap_w']} W, "
                  f"bound {gang['bound']}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
