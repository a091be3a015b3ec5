"""Webhook targets (pure): a host written in one of the numeric forms a resolver accepts
(``inet_aton``: ``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``0177.1``) is judged by the
address it stands for, exactly as the C library reads it."""

from __future__ import annotations

import ipaddress
import socket

from hypothesis import given
from hypothesis import strategies as st

from service.domain.errors import InvalidInput
from service.domain.webhooks.services import check_target

NUMBERS = st.one_of(st.integers(0, 300), st.integers(0, 2**33),
                    st.sampled_from([0, 127, 255, 256, 65535, 65536, 2**24 - 1, 2**24,
                                     2**32 - 1, 2**32]))


def spelled(value: int, form: str) -> str:
    return {"decimal": str(value), "hex": hex(value), "octal": f"0{value:o}"}[form]


PARTS = st.tuples(NUMBERS, st.sampled_from(["decimal", "hex", "octal"])).map(
    lambda part: spelled(*part))
HOSTS = st.lists(PARTS, min_size=1, max_size=4).map(".".join)


def allowed(url: str) -> bool:
    try:
        check_target(url, allow_private=False)
    except InvalidInput:
        return False
    return True


def internal(host: str) -> bool:
    """What the C library makes of the host: not an address, or an internal one."""
    try:
        address = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return True
    return (address.is_private or address.is_loopback or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified)


@given(HOSTS)
def test_numeric_hosts_are_read_like_inet_aton(host):
    assert allowed(f"https://{host}/hook") is not internal(host)


def test_the_usual_spellings_of_loopback_are_refused():
    for host in ("127.1", "2130706433", "0x7f.1", "0x7f.0.0.1", "0177.1", "127.0.0.1"):
        assert not allowed(f"http://{host}/hook"), host
    assert allowed("https://93.184.215.14/hook") and allowed("https://1.1/hook")
