"""Where a trial ran: the Ray node (id, IP) and the host name, recorded on every result row."""

from __future__ import annotations

import socket

import ray


def node_columns() -> dict[str, str | None]:
    """{node_id, node_ip, hostname} of the calling process; the Ray fields are None outside a Ray worker."""
    node_id = node_ip = None
    if ray.is_initialized():
        node_id = ray.get_runtime_context().get_node_id()
        # the address the node registered with (a worker's own guess may be another interface)
        node_ip = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id), None)
    return {"node_id": node_id, "node_ip": node_ip, "hostname": socket.gethostname()}
