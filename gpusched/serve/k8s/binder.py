"""Creating a pod's Binding in the Kubernetes API server (the extender's bind verb)."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiServerBinder"]


class ApiServerBinder:
    """Create a pod's Binding in the Kubernetes API server (what ``bindVerb`` asks for).

    With ``bindVerb`` set, kube-scheduler leaves the binding to the extender, so the
    extender must POST a ``v1.Binding`` to ``/api/v1/namespaces/{ns}/pods/{pod}/binding``.

    Parameters
    ----------
    api_url : str
        The API server, e.g. ``https://kubernetes.default.svc``.
    token : str, optional
        Bearer token (a service account's, allowed to create ``pods/binding``).
    ca_file : str, optional
        CA bundle for the API server's certificate.
    timeout_s : float
    """

    TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    CA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

    def __init__(self, api_url: str, *, token: str | None = None, ca_file: str | None = None,
                 timeout_s: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.ca_file = ca_file
        self.timeout_s = timeout_s

    @classmethod
    def in_cluster(cls) -> "ApiServerBinder":
        """The binder a pod uses: service host from the environment, mounted credentials."""
        import os

        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise RuntimeError("KUBERNETES_SERVICE_HOST is not set: not running in a pod; "
                               "pass --kube-api URL instead")
        with open(cls.TOKEN_PATH, encoding="utf-8") as f:
            token = f.read().strip()
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", token=token, ca_file=cls.CA_PATH)

    def __call__(self, namespace: str, name: str, uid: str, node: str) -> None:
        import json
        import ssl
        import urllib.error
        import urllib.parse
        import urllib.request

        namespace = namespace or "default"
        binding: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        if uid:
            binding["metadata"]["uid"] = uid
        url = (f"{self.api_url}/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}"
               f"/pods/{urllib.parse.quote(name, safe='')}/binding")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=json.dumps(binding).encode(),
                                         headers=headers, method="POST")
        context = (ssl.create_default_context(cafile=self.ca_file)
                   if url.startswith("https:") else None)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=context):
                pass
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace")
            raise RuntimeError(f"API server answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"API server unreachable: {exc}") from None
