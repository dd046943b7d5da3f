"""Every model, imported in one place so metadata (and Alembic) sees all tables."""

from cardcenter.cards.models import Card, CardStatus
from cardcenter.customers.models import Category, Customer, Meter
from cardcenter.operators.models import ApiClient, AuditEntry, Operator, Shift
from cardcenter.reconciliation.models import Finding, MonthlyUsage, Reconciliation, WriteBackRecord
from cardcenter.sales.ledger import JournalEntry
from cardcenter.sales.models import Sale
from cardcenter.tariffs.models import Tariff, TariffVersion
from cardcenter.tokens.models import TokenRecord

__all__ = [
    "ApiClient",
    "AuditEntry",
    "Card",
    "CardStatus",
    "Category",
    "Customer",
    "Finding",
    "JournalEntry",
    "Meter",
    "MonthlyUsage",
    "Operator",
    "Reconciliation",
    "Sale",
    "Shift",
    "Tariff",
    "TariffVersion",
    "TokenRecord",
    "WriteBackRecord",
]
