"""Where a trial ran: the Ray node (id, IP) and the host name, recorded on every result row."""

from __future__ import annotations

import socket

import ray


def node_columns() -> dict[str, str | None]:
    """{node_id, node_ip, hostname} of the calling process; the Ray fields are None outside a Ray worker."""
    node_id = node_ip = None
    if ray.is_initialized():
        node_id = ray.get_runtime_context().get_node_id()
        node_ip = ray.util.get_node_ip_address()
    return {"node_id": node_id, "node_ip": node_ip, "hostname": socket.gethostname()}
