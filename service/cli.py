"""Flask commands: ``flask migrate``, ``flask seed-demo``, ``flask keys create|list|revoke``.

(``flask openapi write`` comes from flask-smorest.)
"""

from __future__ import annotations

import uuid
from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from service import migrate
from service.db import utcnow
from service.demo import DEMO_KEYS, seed_demo
from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.domain.errors import DomainError
from service.extensions import clinic_today, unit_of_work

keys_cli = AppGroup("keys", help="Create, list and revoke API keys.")


@keys_cli.command("create")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--label", required=True, help="Who or what uses the key.")
@click.option("--provider-id", type=click.UUID, default=None)
@click.option("--patient-id", type=click.UUID, default=None)
@click.option("--expires-at", default=None, metavar="RFC3339",
              help="When the key stops working, with an offset (2027-06-30T23:59:00-07:00).")
def create_key(role: str, label: str, provider_id: uuid.UUID | None,
               patient_id: uuid.UUID | None, expires_at: str | None) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    try:
        expiry = datetime.fromisoformat(expires_at) if expires_at else None
    except ValueError as error:
        raise click.BadParameter("not an RFC 3339 time", param_hint="--expires-at") from error
    try:
        issued = keys.issue_key(unit_of_work(), role=role, label=label,
                                provider_id=provider_id, patient_id=patient_id,
                                expires_at=expiry)
    except DomainError as error:
        raise click.ClickException(f"{error.code}: {error.detail}") from error
    click.echo(issued.key)
    click.echo(f"(stored as a hash; id {issued.record.public_id}; it will not be shown again)",
               err=True)


@keys_cli.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
def list_keys(include_revoked: bool) -> None:
    """List keys (prefix, role, label, binding, state, expiry); never the secrets."""
    now = utcnow()
    for record in keys.list_keys(unit_of_work(read_only=True), include_revoked=include_revoked):
        bound = record.provider_id or record.patient_id or "-"
        expiry = record.expires_at.isoformat() if record.expires_at else "-"
        click.echo(f"{record.prefix}\t{record.role.value}\t{record.state(now)}\t{bound}\t"
                   f"{expiry}\t{record.label}")


@keys_cli.command("revoke")
@click.argument("public_id")
def revoke(public_id: str) -> None:
    """Revoke a key by its public id (the third part of ck_<role>_<id>_...)."""
    try:
        record = keys.revoke_key(unit_of_work(), public_id=public_id)
    except DomainError as error:
        raise click.ClickException(f"{error.code}: {error.detail}") from error
    click.echo(f"revoked {record.prefix}")


@click.command("migrate")
def migrate_command() -> None:
    """Upgrade the database schema to the newest migration."""
    migrate.upgrade(current_app.config["DATABASE_URL"])
    click.echo("database at head")


@click.command("seed-demo")
@click.option("--quiet", is_flag=True, help="Do not print the demo keys.")
def seed_demo_command(quiet: bool) -> None:
    """Load the fictional demo clinic into an empty database and print the demo keys."""
    seeded = seed_demo(unit_of_work, today=clinic_today())
    if not seeded:
        click.echo("The database already has data; demo data not loaded.")
    if not quiet:
        click.echo("Demo API keys (local demo database only; never use them elsewhere):")
        for role, key in DEMO_KEYS.items():
            click.echo(f"  {role:<12} {key}")


def register_commands(app: Flask) -> None:
    app.cli.add_command(keys_cli)
    app.cli.add_command(migrate_command)
    app.cli.add_command(seed_demo_command)
