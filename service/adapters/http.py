"""Webhook POSTs over HTTP(S) (http.client): one connection per delivery, no redirects
followed, a timeout (``WEBHOOK_TIMEOUT_SECONDS``), at most 64 KiB of the answer read.

Only a 2xx answer is an acceptance. Everything else is a transient ``DeliveryError`` (the
webhook outbox retries within its window): ``http_<status>``, ``timeout``,
``connection_refused``, ``tls_error``, ``dns_error`` or ``network_<error>``. The URL, the
body and the headers never reach a log line.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

from service.domain.outbox import DeliveryError
from service.domain.webhooks.delivery import HttpPost

RESPONSE_READ_LIMIT = 64 * 1024


def open_connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """An HTTP(S) connection to the URL's host (TLS verified), and the path to request."""
    parts = urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout,
            context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                timeout=timeout)
    return connection, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class HttpChannel:
    name = "webhook"

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout = timeout_seconds

    def send(self, message: HttpPost) -> int:
        connection, path = open_connection(message.url, self.timeout)
        try:
            connection.request("POST", path, body=message.body, headers=message.headers)
            response = connection.getresponse()
            response.read(RESPONSE_READ_LIMIT)
            status = response.status
        except TimeoutError:
            raise DeliveryError("timeout", permanent=False) from None
        except ConnectionRefusedError:
            raise DeliveryError("connection_refused", permanent=False) from None
        except ssl.SSLError:
            raise DeliveryError("tls_error", permanent=False) from None
        except socket.gaierror:
            raise DeliveryError("dns_error", permanent=False) from None
        except (http.client.HTTPException, OSError) as error:
            raise DeliveryError(f"network_{type(error).__name__}", permanent=False) from None
        finally:
            connection.close()
        if not 200 <= status < 300:
            raise DeliveryError(f"http_{status}", permanent=False, status_code=status)
        return status

    def close(self) -> None:
        pass  # no connection outlives a delivery
