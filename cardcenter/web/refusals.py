"""A service's refusal as a form shows it: the sentence under the label the operator sees.

The services name the field at fault by their own name (``"amount: give 0.01
or more"``, :class:`cardcenter.core.errors.InvalidInputError`); a page puts
the field's label in the operator's language in front instead, and marks the
field.
"""

from __future__ import annotations

from collections.abc import Mapping


def labelled_refusal(
    exc: Exception, labels: Mapping[str, object], field: str | None = None
) -> tuple[str, str | None]:
    """The refusal's sentence with its field's label in front, and the field at fault.

    ``field`` stands for the error's own when the page knows better which
    field a refusal is about; a field without a label keeps the service's
    wording.
    """
    field = field or getattr(exc, "field", None)
    text = str(exc)
    if field is not None:
        prefix = f"{field}: "
        body = text[len(prefix) :] if text.startswith(prefix) else text
        label = labels.get(field)
        text = f"{label}: {body}" if label is not None else text
    return text, field
