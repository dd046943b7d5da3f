"""Mapped objects from rows the ORM did not load: a row just inserted, or one read on the driver.

The ORM builds each object it loads through its row processors, and records
every value given to a constructor as a change; on the sale's and the
vend's paths either costs more than the statement that produced the row.
The objects made here are the same objects, held by the session as loaded
ones: it tracks their changes, loads their relationships and flushes them
as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import InstanceState, Mapper, Session, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.instrumentation import manager_of_class

from cardcenter.core.prepared import Prepared

_Mapped = TypeVar("_Mapped")


def as_loaded(session: Session, cls: type[_Mapped], **values: Any) -> _Mapped:
    """An object of mapped ``cls`` holding ``values`` as though ``session`` had loaded its row.

    For a row the caller has just inserted with a plain statement, or read
    on the driver (every column given): the constructor would record every
    value as a change (an attribute event each, about 30 us for a sale)
    only to have the change forgotten again. The session tracks later
    changes as usual.
    """
    mapper: Mapper[Any] = inspect(cls)
    identity = tuple(values[mapper.get_property_by_column(c).key] for c in mapper.primary_key)
    obj: _Mapped = _held(session, mapper, values, mapper.identity_key_from_primary_key(identity))
    return obj


_ADD_WITH_IDENTITY: Callable[[Session, InstanceState[Any]], None] | None = getattr(
    Session, "_update_impl", None
)
"""The step ``Session.add`` takes for an object with an identity, where this
SQLAlchemy has it (2.0 and 2.1 do; pyproject.toml admits those). It is not
public: a release without it leaves :func:`_held` on the public calls."""


def _held(session: Session, mapper: Mapper[Any], values: dict[str, Any], key: Any) -> Any:
    """A new object of ``mapper`` with ``values`` and identity ``key``, persistent in ``session``.

    What ``make_transient_to_detached`` and ``Session.add`` do together, less
    their work that cannot apply here (about 25 us an object, 100 us a
    sale): every column is given, so there is nothing to expire, and no
    relationship is loaded, so the save-update cascade has nothing to
    follow. Where the step ``add`` takes for an object with an identity is
    missing (:data:`_ADD_WITH_IDENTITY`), the two public calls do it, slower
    and to the same effect. ``tests/cardcenter/test_sale_path.py`` checks
    the outcome either way is the ORM's own: tracked, flushed, lazy-loading.
    """
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update(values)
    state = instance_state(obj)
    if _ADD_WITH_IDENTITY is None:
        make_transient_to_detached(obj)  # the identity from the values: ``key``
        session.add(obj)
        return obj
    state.key = key
    _ADD_WITH_IDENTITY(session, state)
    return obj


def as_written(cls: type[_Mapped], **values: Any) -> _Mapped:
    """An object of mapped ``cls`` holding ``values``, belonging to no session.

    For a row written or read with a plain statement that the caller only
    reads afterwards (a token, an audit entry, the API client of a
    request): the constructor's change tracking (an attribute event per
    value) is then wasted work. Its primary key is what ``values`` give
    (None when they give none, as a new object's).
    """
    obj: _Mapped = manager_of_class(cls).new_instance()
    obj.__dict__.update(values)
    return obj


class RowObjects:
    """Mapped objects read from one plain row: their columns in order, then the statement's own.

    For a statement run on the driver (:class:`Prepared`) whose objects the
    caller then works with as usual. The ORM's loading of a sale's card,
    customer and meter cost about 150 us more than the statement; here
    each object is filled from its slice of the row and put into the
    session as :func:`as_loaded` puts one. An object the session holds already is kept
    as it is, as the ORM's loading keeps it.
    """

    __slots__ = ("_layout", "columns", "links")

    def __init__(self, *models: type[Any], links: Sequence[tuple[int, str, int]] = ()) -> None:
        """``links``: (object, relationship, object) positions in ``models`` to join up, as
        eager loading would (a version's tariff, kept with it beyond the session)."""
        self._layout: list[tuple[Mapper[Any], tuple[str, ...], int, int, tuple[int, ...]]] = []
        self.columns: list[Any] = []
        """Every column of every model, in the order :meth:`attach` reads them."""
        for model in models:
            mapper: Mapper[Any] = inspect(model)
            keys = tuple(attr.key for attr in mapper.column_attrs)
            start = len(self.columns)
            identity = tuple(
                start + keys.index(mapper.get_property_by_column(column).key)
                for column in mapper.primary_key
            )
            self._layout.append((mapper, keys, start, start + len(keys), identity))
            self.columns.extend(getattr(model, key) for key in keys)
        self.links = tuple(links)

    def load(
        self, session: Session, statement: Prepared, params: Mapping[str, Any]
    ) -> tuple[list[Any], Sequence[Any]] | None:
        """Run ``statement`` (its columns :attr:`columns`, then any others) in ``session``'s
        transaction: its first row's objects and other columns, or None.

        The session's pending changes are flushed first, as the ORM's own
        autoflush would, so the row shows them.
        """
        if session.autoflush:
            session.flush()
        row = statement.first(session.connection(), params)
        return None if row is None else self.attach(session, row)

    def attach(self, session: Session, row: Sequence[Any]) -> tuple[list[Any], Sequence[Any]]:
        """The objects in ``row`` (attached to ``session``), and the row's other columns.

        An object whose primary key is NULL (the missing side of an outer
        join) is None.
        """
        objects: list[Any] = []
        for mapper, keys, start, end, positions in self._layout:
            identity = tuple(map(row.__getitem__, positions))
            if identity.count(None) == len(identity):
                objects.append(None)
                continue
            key = mapper.identity_key_from_primary_key(identity)
            held = session.identity_map.get(key)
            if held is None:
                held = _held(session, mapper, dict(zip(keys, row[start:end], strict=True)), key)
            objects.append(held)
        for owner, name, target in self.links:
            if objects[owner] is not None and name not in objects[owner].__dict__:
                set_committed_value(objects[owner], name, objects[target])
        return objects, row[len(self.columns) :]
