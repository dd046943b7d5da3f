"""Receipts for card sales and tokens: as text, ESC/POS bytes for thermal printers, and PDF.

Independent of the web application: the pages, the API's reprint and the
command line build a :class:`~cardcenter.receipts.model.Receipt` from a
service's result and print it in the operator's language::

    receipt = receipt_for_sale(result, site="HQ", operator="alice", customer_name="Li Wei")
    escpos.render(receipt, paper=58, locale="zh_Hans_CN", tz="Asia/Shanghai")
    pdf.render(receipt.reprinted(now), locale="en")
"""

from cardcenter.receipts.model import (
    Receipt,
    ReceiptKind,
    receipt_for_sale,
    receipt_for_tokens,
)

__all__ = ["Receipt", "ReceiptKind", "receipt_for_sale", "receipt_for_tokens"]
