"""Where discovery may probe: one local segment, named by its broadcast address, and nothing else.

python-kasa's discovery sends its probes (UDP 9999, 20002, 20004) to the target it is given and builds
a device for every answer. The target is therefore checked before anything is sent, and an answer is
only taken from an address inside the segment that target can reach:

- a private (10/8, 172.16/12, 192.168/16) or link-local (169.254/16) IPv4 address whose host bits are
  all ones for a prefix of /30 or wider: a broadcast address, as `ip -br addr` shows next to `brd`.
  The segment is the widest network it is the broadcast address of, clipped to its private range
  (192.168.1.255 -> 192.168.0.0/23 at most; the probe itself only reaches the real, narrower, segment);
- a loopback address (127/8): probes never leave the machine (tests, a local relay).

255.255.255.255 (what python-kasa uses by default) and any public address are refused.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
)
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class ScopeError(ValueError):
    """The discovery target is not a local broadcast address."""


@dataclass(frozen=True)
class Segment:
    target: str
    network: ipaddress.IPv4Network

    def holds(self, host: str) -> bool:
        """Whether an answer from ``host`` comes from inside the segment."""
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return address in self.network


def segment_of(target: str) -> Segment:
    """The segment a discovery target may reach; ScopeError (one sentence) when it must not be used."""
    try:
        address = ipaddress.IPv4Address(target)
    except ValueError:
        raise ScopeError(
            f"{target!r} is not an IPv4 address (give the segment's broadcast address)"
        ) from None
    if address in _LOOPBACK:
        return Segment(target, _LOOPBACK)
    container = next((r for r in _RANGES if address in r), None)
    if container is None:
        raise ScopeError(
            f"{target} is not a private or link-local address: discovery only probes the local segment "
            "(give its broadcast address, e.g. 192.168.1.255)"
        )
    value = int(address)
    host_bits = 0
    while host_bits < 32 and value & (1 << host_bits):
        host_bits += 1
    if host_bits < 2:
        raise ScopeError(
            f"{target} is not a broadcast address (its host part is not all ones for any network of "
            "/30 or wider; e.g. 192.168.1.255 for 192.168.1.0/24)"
        )
    prefix = max(32 - host_bits, container.prefixlen)
    network = ipaddress.IPv4Network((value, prefix), strict=False)
    return Segment(target, network)
