"""Feed addresses and CalDAV credentials, encrypted at rest with ``CALENDAR_SECRET_KEY``.

One Fernet token (AES-128-CBC + HMAC-SHA256, ``cryptography``) per connection holds
``{"url", "username", "password"}``. The key comes from the environment only; without it the
service fails closed: no iCalendar or CalDAV connection can be created and none is synced
(push connections hold no secret and work without it). A ``Sealed`` value never shows its
contents in ``repr`` (so never in a log line or a traceback's locals dump).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken

from service.domain.errors import InvalidState


class SecretsUnavailable(InvalidState):
    """409: the service is not set up to hold calendar secrets (fails closed)."""

    code = "calendar_secrets_unavailable"
    title = "Connected calendars need CALENDAR_SECRET_KEY"


@dataclass(frozen=True)
class Sealed:
    """What a connection's secret opens to."""

    url: str = field(repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


class SecretBox:
    def __init__(self, key: str | None) -> None:
        self._fernet: Fernet | None = None
        if key:
            try:
                self._fernet = Fernet(key.encode())
            except (ValueError, TypeError):
                raise ValueError("CALENDAR_SECRET_KEY must be a Fernet key (32 url-safe "
                                 "base64-encoded bytes)") from None

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def _require(self) -> Fernet:
        if self._fernet is None:
            raise SecretsUnavailable("Set CALENDAR_SECRET_KEY (a Fernet key) to connect "
                                     "iCalendar or CalDAV calendars.")
        return self._fernet

    def seal(self, secret: Sealed) -> str:
        body = json.dumps({"url": secret.url, "username": secret.username,
                           "password": secret.password})
        return self._require().encrypt(body.encode()).decode()

    def open(self, token: str) -> Sealed:
        try:
            data = json.loads(self._require().decrypt(token.encode()))
        except InvalidToken:
            raise SecretsUnavailable("A connection's secret does not open with the current "
                                     "CALENDAR_SECRET_KEY.") from None
        return Sealed(url=data["url"], username=data.get("username"),
                      password=data.get("password"))
