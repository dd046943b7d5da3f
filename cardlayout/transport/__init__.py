"""Ways to reach a card: PC/SC through pcscd, or a virtual card in-process.

The PC/SC transport lives in :mod:`cardlayout.transport.pcsc`, the only module
that imports pyscard, so the rest of the package runs without it.
"""

from cardlayout.transport.base import Transport
from cardlayout.transport.channel import CardChannel

__all__ = ["CardChannel", "Transport"]
