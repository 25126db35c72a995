"""The order desk's MCP server for examples/support_triage.py: orders, invoices, shipments and
a small known-issues base, over an in-memory dataset (the `mcp` SDK's MCPServer, stdio).

Why a separate process and not local tools: the specialists of the triage example reach their
back office the way a real deployment would, through MCP; the server starts lazily in the Ray
worker (or Flink worker) that runs the call, and its answers are journaled like any tool call.

Tools:
    get_order(order_id)          the order: customer, items, total, status
    list_orders(customer)        a customer's orders, newest first
    get_invoice(order_id)        amount, paid, refund state
    track_shipment(order_id)     carrier, tracking number, last scan, ETA
    search_known_issues(query)   known-issue articles whose words match the query

Run it (stdio; the triage example does this for you)::

    python examples/mcp_servers/orders_server.py
"""

from __future__ import annotations

import re
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["INVOICES", "ISSUES", "ORDERS", "SHIPMENTS", "build_server", "main"]

ORDERS: dict[str, dict[str, Any]] = {
    "1001": {"customer": "alice", "items": ["kettle"], "total": 49.90, "status": "shipped"},
    "1002": {"customer": "bob", "items": ["desk lamp"], "total": 35.00, "status": "backordered"},
    "1003": {"customer": "carol", "items": ["headphones"], "total": 129.00, "status": "delivered"},
    "1004": {"customer": "dave", "items": ["blender"], "total": 89.50, "status": "cancelled"},
    "1005": {"customer": "erin", "items": ["router"], "total": 74.99, "status": "shipped"},
    "1006": {"customer": "frank", "items": ["monitor"], "total": 219.00, "status": "delivered"},
}

INVOICES: dict[str, dict[str, Any]] = {
    "1001": {"invoice": "INV-1001", "amount": 49.90, "paid": True, "refund": "none"},
    "1002": {"invoice": "INV-1002", "amount": 35.00, "paid": True, "refund": "none"},
    "1003": {"invoice": "INV-1003", "amount": 129.00, "paid": True, "refund": "none"},
    "1004": {"invoice": "INV-1004", "amount": 89.50, "paid": True, "refund": "issued 2026-11-19"},
    "1005": {"invoice": "INV-1005", "amount": 74.99, "paid": False, "refund": "none"},
    "1006": {"invoice": "INV-1006", "amount": 438.00, "paid": True, "refund": "none"},
}

SHIPMENTS: dict[str, dict[str, Any]] = {
    "1001": {
        "carrier": "DHL",
        "tracking": "DHL-771001",
        "last_scan": "Leipzig hub",
        "eta": "2026-11-24",
    },
    "1003": {
        "carrier": "UPS",
        "tracking": "UPS-553003",
        "last_scan": "delivered to doorstep",
        "eta": "2026-11-18",
    },
    "1005": {
        "carrier": "GLS",
        "tracking": "GLS-905005",
        "last_scan": "out for delivery",
        "eta": "2026-11-22",
    },
    "1006": {
        "carrier": "DHL",
        "tracking": "DHL-776006",
        "last_scan": "delivered to neighbour",
        "eta": "2026-11-17",
    },
}

ISSUES: list[dict[str, str]] = [
    {
        "id": "KB-12",
        "title": "Login fails after password reset",
        "fix": "clear the app cache, then sign in with the new password",
    },
    {
        "id": "KB-31",
        "title": "Router drops wifi every few minutes",
        "fix": "update the router firmware to 3.2.1 and reboot it",
    },
    {
        "id": "KB-44",
        "title": "App crashes on start after update",
        "fix": "reinstall the app; version 5.0.2 fixes the crash",
    },
]

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    {
        "the",
        "a",
        "an",
        "my",
        "is",
        "it",
        "on",
        "in",
        "to",
        "and",
        "of",
        "i",
        "after",
        "every",
        "few",
        "with",
        "for",
        "me",
        "can",
        "you",
        "not",
    }
)


def _order(order_id: str) -> dict[str, Any]:
    key = str(order_id).strip().lstrip("#")
    if key not in ORDERS:
        raise ToolError(f"no order {order_id!r}; order numbers look like '1001'")
    return {"order_id": key, **ORDERS[key]}


def build_server() -> MCPServer:
    """The order-desk server with its five tools."""
    server = MCPServer(
        "orders",
        instructions="Order desk: orders, invoices, shipments, issues.",
        log_level="WARNING",
    )

    @server.tool()
    def get_order(order_id: str) -> dict[str, Any]:
        """Get one order: customer, items, total and status.

        Args:
            order_id: The order number, e.g. "1001".
        """
        return _order(order_id)

    @server.tool()
    def list_orders(customer: str) -> list[dict[str, Any]]:
        """List the orders of a customer, newest first.

        Args:
            customer: The customer's id, e.g. "alice".
        """
        found = [{"order_id": k, **v} for k, v in ORDERS.items() if v["customer"] == customer]
        return sorted(found, key=lambda o: o["order_id"], reverse=True)

    @server.tool()
    def get_invoice(order_id: str) -> dict[str, Any]:
        """Get the invoice of an order: amount charged, whether it is paid, refund state.

        Args:
            order_id: The order number, e.g. "1001".
        """
        order = _order(order_id)
        return {"order_id": order["order_id"], **INVOICES[order["order_id"]]}

    @server.tool()
    def track_shipment(order_id: str) -> dict[str, Any]:
        """Track the shipment of an order: carrier, tracking number, last scan, ETA.

        Args:
            order_id: The order number, e.g. "1001".
        """
        order = _order(order_id)
        shipment = SHIPMENTS.get(order["order_id"])
        if shipment is None:
            return {
                "order_id": order["order_id"],
                "status": order["status"],
                "carrier": None,
                "last_scan": f"not shipped ({order['status']})",
            }
        return {"order_id": order["order_id"], "status": order["status"], **shipment}

    @server.tool()
    def search_known_issues(query: str) -> list[dict[str, str]]:
        """Search the known-issues base; best matches first (at most 2).

        Args:
            query: Words describing the problem, e.g. "login fails".
        """
        words = set(_WORD.findall(query.lower())) - _STOP
        scored = []
        for issue in ISSUES:
            text = set(_WORD.findall(f"{issue['title']} {issue['fix']}".lower()))
            score = len(words & text)
            if score:
                scored.append((score, issue))
        scored.sort(key=lambda pair: (-pair[0], pair[1]["id"]))
        return [issue for _, issue in scored[:2]]

    return server


def main() -> None:
    """Serve over stdio."""
    build_server().run("stdio")


if __name__ == "__main__":
    main()
