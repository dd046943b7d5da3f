"""The centre's errors: each one is a sentence an operator can act on.

The command line and (later) the web pages print ``str(error)`` as it is, so
every message names what is wrong and, where there is one, what to do next.
"""

from __future__ import annotations


class CentreError(Exception):
    """Base of every error the billing centre reports to its operators."""


class NotFoundError(CentreError):
    """A customer, meter, card, tariff or sale that does not exist."""


class InvalidInputError(CentreError):
    """A value an operator typed is malformed or out of range."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConflictError(CentreError):
    """The books changed under the request (a stale card, a second operator)."""


class CardRefusedError(CentreError):
    """The card in the reader cannot be served (lost, foreign, forged, torn)."""


class SaleInterruptedError(CentreError):
    """A card write was cut short; the sale is pending and can be finished."""

    def __init__(self, message: str, sale_id: int) -> None:
        super().__init__(message)
        self.sale_id = sale_id
