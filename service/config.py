"""Settings, read from environment variables with local defaults.

Every variable is listed in the README's configuration table; nothing else configures the
service.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"


def _default_database_url() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'clinic.sqlite3'}"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=_default_database_url)
    database_replica_url: str | None = None
    clinic_timezone: str = "America/Phoenix"
    port: int = 8000
    cors_origins: tuple[str, ...] = ()
    clinic_name: str = "Desert Bloom Wellness"
    clinic_phone: str = "+16025550100"
    license_warning_days: int = 60
    sql_echo: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            database_url=env.get("DATABASE_URL") or defaults.database_url,
            database_replica_url=env.get("DATABASE_REPLICA_URL") or None,
            clinic_timezone=env.get("CLINIC_TIMEZONE", defaults.clinic_timezone),
            port=int(env.get("PORT", defaults.port)),
            cors_origins=_csv(env.get("CORS_ORIGINS", "")),
            clinic_name=env.get("CLINIC_NAME", defaults.clinic_name),
            clinic_phone=env.get("CLINIC_PHONE", defaults.clinic_phone),
            license_warning_days=int(
                env.get("LICENSE_WARNING_DAYS", defaults.license_warning_days)
            ),
            sql_echo=env.get("SQL_ECHO", "") in {"1", "true", "yes"},
        )
