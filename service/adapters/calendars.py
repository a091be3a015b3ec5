"""Connected calendars over the network: iCalendar addresses (http.client, conditional GET)
and CalDAV servers (the ``caldav`` client), for reading busy time and writing visits back.

Reading (``CalendarSources.read``): an iCalendar address is fetched with ``If-None-Match``
and ``If-Modified-Since`` (a 304 means "unchanged"), at most ``MAX_FEED_BYTES``, following
at most 3 redirects, each checked like the address itself (no internal addresses unless
``CALENDAR_ALLOW_PRIVATE_TARGETS``). A CalDAV calendar answers an event query over the
sync window; its objects are expanded like a feed (``service.domain.connections.busy``).

Writing (``CalDavWriter.send``): one unconditional PUT of the visit at ``<calendar>/<uid>.ics``
(the same UID every time, so a repeated write replaces, never duplicates).

Failures become machine codes (``SourceError`` / ``DeliveryError``): ``http_<status>``,
``timeout``, ``connection_refused``, ``unauthorized``, ``too_large``... Addresses,
credentials and answers never reach a log line.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote, urljoin

import caldav
from caldav.lib import error as caldav_error

from service.adapters.http import open_connection
from service.domain.connections.models import ConnectionKind
from service.domain.connections.polling import Fetched, SourceError
from service.domain.connections.secrets import Sealed
from service.domain.connections.writeback import CalDavPut
from service.domain.outbox import DeliveryError

MAX_FEED_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 3
USER_AGENT = "clinic-scheduling-calendars/1"


def _network_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(error, ssl.SSLError):
        return "tls_error"
    if isinstance(error, socket.gaierror):
        return "dns_error"
    return f"network_{type(error).__name__}"


class CalendarSources:
    """The reader the calendar sync uses (``CalendarReader``)."""

    def __init__(self, *, timeout_seconds: float, check_url: Callable[[str], str]) -> None:
        self.timeout = timeout_seconds
        self.check_url = check_url  # raises on an address the service may not fetch

    def read(self, kind: ConnectionKind, secret: Sealed, *, start: datetime, end: datetime,
             etag: str | None, last_modified: str | None) -> Fetched:
        if kind is ConnectionKind.CALDAV:
            return Fetched(documents=self._caldav_events(secret, start, end))
        return self._get(secret.url, etag=etag, last_modified=last_modified)

    def _get(self, url: str, *, etag: str | None, last_modified: str | None) -> Fetched:
        headers = {"User-Agent": USER_AGENT, "Accept": "text/calendar"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        for _ in range(MAX_REDIRECTS + 1):
            try:
                self.check_url(url)
            except Exception:  # noqa: BLE001 - a refused address, by design not detailed
                raise SourceError("url_not_allowed") from None
            status, answer, body = self._request(url, headers)
            if status in (301, 302, 303, 307, 308) and answer.get("location"):
                url = urljoin(url, answer["location"])
                continue
            if status == 304:
                return Fetched(documents=None, etag=etag, last_modified=last_modified)
            if status in (401, 403):
                raise SourceError("unauthorized")
            if not 200 <= status < 300:
                raise SourceError(f"http_{status}")
            return Fetched(documents=[body], etag=answer.get("etag"),
                           last_modified=answer.get("last-modified"))
        raise SourceError("too_many_redirects")

    def _request(self, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        connection, path = open_connection(url, self.timeout)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read(MAX_FEED_BYTES + 1)
            answer = {name.lower(): value for name, value in response.getheaders()}
            status = response.status
        except (http.client.HTTPException, OSError) as error:
            raise SourceError(_network_reason(error)) from None
        finally:
            connection.close()
        if len(body) > MAX_FEED_BYTES:
            raise SourceError("too_large")
        return status, answer, body

    def _caldav_events(self, secret: Sealed, start: datetime, end: datetime) -> list[bytes]:
        try:
            self.check_url(secret.url)
        except Exception:  # noqa: BLE001
            raise SourceError("url_not_allowed") from None
        try:
            with _client(secret, self.timeout) as client:
                calendar = client.calendar(url=secret.url)
                found = calendar.search(start=start, end=end, event=True, expand=False)
                return [str(item.data).encode() for item in found]
        except caldav_error.AuthorizationError:
            raise SourceError("unauthorized") from None
        except caldav_error.NotFoundError:
            raise SourceError("http_404") from None
        except caldav_error.DAVError as error:
            raise SourceError(f"caldav_{type(error).__name__}") from None
        except OSError as error:
            raise SourceError(_network_reason(error)) from None
        except Exception as error:  # noqa: BLE001 - the HTTP stack's own errors
            raise SourceError(f"caldav_{type(error).__name__}") from None


def _client(secret: Sealed, timeout: float) -> caldav.DAVClient:
    return caldav.DAVClient(url=secret.url, username=secret.username,
                            password=secret.password, timeout=int(max(1, timeout)),
                            enable_rfc6764=False)


class CalDavWriter:
    """The write-back outbox's channel."""

    name = "caldav"

    def __init__(self, *, timeout_seconds: float, check_url: Callable[[str], str]) -> None:
        self.timeout = timeout_seconds
        self.check_url = check_url

    def send(self, message: CalDavPut) -> int:
        try:
            self.check_url(message.secret.url)
        except Exception:  # noqa: BLE001
            raise DeliveryError("url_not_allowed", permanent=True) from None
        base = message.secret.url if message.secret.url.endswith("/") else (
            message.secret.url + "/")
        target = base + quote(message.uid, safe="") + ".ics"
        try:
            with _client(message.secret, self.timeout) as client:
                answer = client.put(target, message.body.decode(), {
                    "Content-Type": "text/calendar; charset=utf-8"})
        except caldav_error.AuthorizationError:
            raise DeliveryError("unauthorized", permanent=False) from None
        except caldav_error.DAVError as error:
            raise DeliveryError(f"caldav_{type(error).__name__}", permanent=False) from None
        except OSError as error:
            raise DeliveryError(_network_reason(error), permanent=False) from None
        except Exception as error:  # noqa: BLE001
            raise DeliveryError(f"caldav_{type(error).__name__}", permanent=False) from None
        status = int(answer.status)
        if status in (401, 403):
            raise DeliveryError("unauthorized", permanent=False, status_code=status)
        if not 200 <= status < 300:
            raise DeliveryError(f"http_{status}", permanent=False, status_code=status)
        return status

    def close(self) -> None:
        return None
