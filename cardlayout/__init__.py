"""What the billing centre and the meter agree on.

The card files and their codecs, the keys and MACs that protect them, the
APDUs that move them, the transports (PC/SC, in-process) and the virtual card.
This package imports neither ``cardcenter`` nor ``cardmeter``; pyscard is
imported only inside :mod:`cardlayout.transport.pcsc`.
"""

__all__: list[str] = []
