"""APDUs: command and response types, ISO/IEC 7816-4 builders, status words."""

from cardlayout.apdu.apdu import CommandApdu, ResponseApdu
from cardlayout.apdu.status import StatusError, check_status, status_meaning

__all__ = ["CommandApdu", "ResponseApdu", "StatusError", "check_status", "status_meaning"]
