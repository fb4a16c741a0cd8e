"""`dataport keys create|list|revoke`: API keys for scripts (made with a sign-in token)."""

from __future__ import annotations

import click
from rich.table import Table

from dataport_cli.context import json_option, state
from dataport_cli.ui import kv_table


@click.group("keys", help="API keys for scripts and scheduled jobs (`Authorization: ApiKey`). "
             "Making and revoking them needs a sign-in token, not a key.")
def keys() -> None:
    pass


@keys.command("create", help="Make a key; it is shown this once.\n\n\b\nExample:\n"
              "  dataport keys create --name nightly-backup --expires-in-days 90")
@click.option("--name", required=True)
@click.option("--expires-in-days", type=click.IntRange(1, 365))
@json_option
def create_key(name: str, expires_in_days: int | None) -> None:
    st = state()
    body: dict[str, object] = {"name": name}
    if expires_in_days is not None:
        body["expiresInDays"] = expires_in_days
    created = st.api.call("POST", "/api-keys", json=body)
    st.output.document(created)
    st.output.table(kv_table(f"API key {created['keyId']}", [
        ("name", created["name"]), ("key", created["key"]),
        ("expires", created.get("expiresAt") or "never")]))
    st.output.say("Store the key now: it is not shown again (only its SHA-256 is kept).")


@keys.command("list", help="Your keys, newest first (never the keys themselves).")
@json_option
def list_keys() -> None:
    st = state()
    page = st.api.call("GET", "/api-keys")
    st.output.document(page)
    table = Table("key id", "name", "created", "expires", "revoked")
    for key in page.get("apiKeys") or []:
        table.add_row(key["keyId"], key["name"], str(key.get("createdAt", ""))[:19],
                      str(key.get("expiresAt") or "never")[:19], str(key.get("revoked", False)))
    st.output.table(table)


@keys.command("revoke", help="Revoke a key (refused on the WebSocket at once, on REST within "
              "a minute).\n\n\b\nExample:\n  dataport keys revoke <keyId>")
@click.argument("key_id")
@json_option
def revoke_key(key_id: str) -> None:
    st = state()
    revoked = st.api.call("DELETE", f"/api-keys/{key_id}")
    st.output.document(revoked)
    st.output.say(f"Key {key_id} revoked.")
