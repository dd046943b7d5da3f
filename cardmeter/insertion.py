"""Taking a card: the purchase-count rule, tool cards and the write-back.

The rule (DESIGN.md section 3), checked in this order:

1. EF01 names this meter (or, for a tool card, any meter); else the card is
   refused as wrong meter and counted illegal (no write-back: the card's
   meter key is another meter's).
2. The card proves the key of this meter (mutual authentication); a forged or
   foreign card is refused and counted illegal.
3. Binding: an opening card binds an unopened meter to its customer and card
   serial; a purchase card must match both; a replacement card must match the
   customer and re-registers its serial, so the old card is refused from then
   on. A mismatch is refused and counted illegal.
4. The purse MAC must verify (else illegal).
5. Purchase count: card < meter: nothing (count lower); equal: nothing;
   card = meter + 1 with the write-back cleared: load, unless the hoarding
   limit would be passed; card = meter + 1 with a write-back, or card >=
   meter + 2: refused with the reason.

Every insertion the card can authenticate ends with a MAC'd write-back (and
history). A load is a two-step transaction (docs/meter.md section 5): the
meter saves a *pending* load, writes the card, then commits. Killed or pulled
in between, the next insertion settles the pending load by the card's
purchase count, so a purchase is loaded exactly once, whichever card or
power failure came between.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cardlayout.apdu.status import StatusError
from cardlayout.card.operations import open_meter_session, verify_purse, write_meter_write_back
from cardlayout.card.session import CardSession
from cardlayout.card.snapshot import CardSnapshot, FileStatus, read_snapshot
from cardlayout.errors import SecurityError
from cardlayout.files import (
    ANY_METER,
    HISTORY,
    PARAMETERS,
    PURSE,
    TARIFF_SET_1,
    WRITE_BACK,
    CardType,
    EventCode,
    History,
    InsertionResult,
    MeterStatus,
    Parameters,
    UpdateFlags,
    UserType,
    Utility,
    WriteBack,
)
from cardlayout.security.keys import SecretKey
from cardlayout.transport.channel import CardChannel
from cardmeter import credit
from cardmeter.registers import MeterState, PendingLoad
from cardmeter.security import SecurityModule

Step = Callable[[str], None]
HISTORY_EVENTS = 8

REASONS = {
    InsertionResult.LOADED: "credit loaded",
    InsertionResult.NOTHING_TO_LOAD: "this purchase is already loaded",
    InsertionResult.COUNT_LOWER: "the card's purchase count is older than the meter's",
    InsertionResult.WRITE_BACK_NOT_EMPTY: (
        "the card still holds a write-back: take it to the service hall first"
    ),
    InsertionResult.COUNT_TOO_HIGH: "a purchase in between never reached this meter",
    InsertionResult.HOARDING_LIMIT: "loading would pass the hoarding limit",
    InsertionResult.WRONG_METER: "the card belongs to another meter",
    InsertionResult.WRONG_CUSTOMER: "the card belongs to another customer",
    InsertionResult.WRONG_CARD: "the card is not the one registered with this meter",
    InsertionResult.PURSE_MAC_BAD: "the purse does not carry a valid MAC",
    InsertionResult.PARAMETERS_ONLY: "parameters taken",
    InsertionResult.READ_ONLY: "meter data written to the card",
}

ILLEGAL = {
    InsertionResult.WRONG_METER,
    InsertionResult.WRONG_CUSTOMER,
    InsertionResult.WRONG_CARD,
    InsertionResult.PURSE_MAC_BAD,
}


@dataclass(frozen=True)
class Outcome:
    """What one insertion did, as ``cardmeter insert`` prints it."""

    accepted: bool
    result: InsertionResult | None
    reason: str
    loaded: int
    remaining: int
    written_back: bool

    def to_json(self) -> dict[str, object]:
        return {
            "accepted": self.accepted,
            "result": self.result.name.lower() if self.result is not None else None,
            "reason": self.reason,
            "loaded": self.loaded,
            "remaining": self.remaining,
            "written_back": self.written_back,
        }


class Insertion:
    """One card insertion at one meter.

    ``save`` persists the state (the meter's non-volatile write); ``step`` is
    called after each step with its name, so tests can kill the meter there.
    """

    def __init__(
        self,
        state: MeterState,
        sam: SecurityModule,
        save: Callable[[MeterState], None],
        *,
        now: datetime | None = None,
        step: Step | None = None,
    ) -> None:
        self.state = state
        self.sam = sam
        self.save = save
        self.now = (now or state.clock).astimezone(UTC)
        self.step = step or (lambda name: None)
        self.loaded = 0
        # Only a load this insertion made is committed after its write-back; an
        # older pending load waits for its own user card (_settle_pending).
        self.new_pending: PendingLoad | None = None

    # -- entry -------------------------------------------------------------------

    def take(self, channel: CardChannel) -> Outcome:
        utility = Utility(self.state.utility)
        snapshot = read_snapshot(channel, utility)
        params = snapshot.parameters
        if params is None:
            state = snapshot.state(PARAMETERS)
            return self._refused(
                None, f"the card cannot be read: {state.problem or 'no application'}"
            )
        if params.card_type.is_user_card:
            return self._user_card(channel, snapshot, params, utility)
        return self._tool_card(channel, snapshot, params, utility)

    # -- user cards ----------------------------------------------------------------

    def _user_card(
        self, channel: CardChannel, snapshot: CardSnapshot, params: Parameters, utility: Utility
    ) -> Outcome:
        st = self.state
        if params.meter_no != st.meter_no:
            return self._illegal(InsertionResult.WRONG_METER, None, snapshot)
        session = self._authenticate(channel, self.sam.card_key, utility)
        if session is None:
            return self._refused_illegal("the card is forged or from another system")
        binding = self._check_binding(snapshot, params)
        if binding is not None:
            return self._illegal(binding, session, snapshot)
        purse = snapshot.purse
        if purse is None:
            # Torn or blank (pulled at the service hall): a fault, not an attack.
            problem = snapshot.state(PURSE).problem or "the purse cannot be read"
            return self._refused(None, f"{problem}: take the card back to the service hall")
        try:
            verify_purse(purse, params, snapshot.serial, self.sam.purse_key)
        except SecurityError:
            return self._illegal(InsertionResult.PURSE_MAC_BAD, session, snapshot)

        if params.card_type is CardType.OPENING and not st.opened:
            st.customer_no, st.card_serial = params.customer_no, snapshot.serial
        elif params.card_type is CardType.REPLACEMENT:
            st.card_serial = snapshot.serial  # the old card is refused from now on

        result = self._settle_pending(purse.purchase_count, purse.amount)
        if result is None:
            result = self._count_rule(snapshot, params, purse.purchase_count, purse.amount)
            if result is InsertionResult.LOADED:
                # a new purchase: pending first, then the card, then commit
                self._take_parameters(snapshot, params)
                st.pending = PendingLoad(snapshot.serial, purse.purchase_count, purse.amount)
                self.new_pending = st.pending
        credit.card_inserted(st, self.now)
        return self._finish(result, session, snapshot, accepted=result is InsertionResult.LOADED)

    def _check_binding(self, snapshot: CardSnapshot, params: Parameters) -> InsertionResult | None:
        st = self.state
        kind = params.card_type
        if not st.opened:
            return None if kind is CardType.OPENING else InsertionResult.WRONG_CUSTOMER
        if params.customer_no != st.customer_no:
            return InsertionResult.WRONG_CUSTOMER
        if kind is not CardType.REPLACEMENT and snapshot.serial != st.card_serial:
            return InsertionResult.WRONG_CARD
        return None

    def _settle_pending(self, card_count: int, card_amount: int) -> InsertionResult | None:
        """Commit a load a pulled card or a power loss left pending.

        Same count on the card: that purchase (its amount as the card now
        says, since the centre adds to a purchase it saw no write-back for).
        A higher count: the centre saw the write-back, so the pending amount
        was delivered; commit it and go on with the card.
        """
        pending = self.state.pending
        if pending is None:
            return None
        if card_count == pending.purchase_count:
            self._commit(card_count, card_amount)
            return InsertionResult.LOADED
        if card_count > pending.purchase_count:
            self._commit(pending.purchase_count, pending.amount)
        return None

    def _count_rule(
        self, snapshot: CardSnapshot, incoming: Parameters, count: int, amount: int
    ) -> InsertionResult:
        """The purchase-count rule for a new purchase; the hoarding limit is the one that
        will hold once it is loaded: the card's, when it brings new parameters (the centre
        checks each sale against the customer's parameters as they are now)."""
        st = self.state
        if count < st.last_purchase_count:
            return InsertionResult.COUNT_LOWER
        if count == st.last_purchase_count:
            return InsertionResult.NOTHING_TO_LOAD
        if count > st.last_purchase_count + 1:
            return InsertionResult.COUNT_TOO_HIGH
        if snapshot.state(WRITE_BACK).status is not FileStatus.CLEARED:
            return InsertionResult.WRITE_BACK_NOT_EMPTY
        params = incoming if UpdateFlags.PARAMETERS in incoming.update_flags else st.parameters
        limit = params.hoarding_limit if params is not None else None
        if limit is not None and st.remaining + amount > limit:
            return InsertionResult.HOARDING_LIMIT
        return InsertionResult.LOADED

    def _take_parameters(self, snapshot: CardSnapshot, params: Parameters) -> None:
        """Parameters and tariff sets as the card's update flags say."""
        if UpdateFlags.PARAMETERS in params.update_flags or self.state.parameters_frame is None:
            self.state.parameters_frame = PARAMETERS.encode(params)
        self._take_tariffs(snapshot, params)

    def _commit(self, count: int, amount: int) -> None:
        commit(self.state, count, amount, self.now)
        self.loaded += amount

    # -- tool cards ------------------------------------------------------------------

    def _tool_card(
        self, channel: CardChannel, snapshot: CardSnapshot, params: Parameters, utility: Utility
    ) -> Outcome:
        st = self.state
        if params.meter_no not in (st.meter_no, ANY_METER):
            return self._illegal(InsertionResult.WRONG_METER, None, snapshot)
        key = self.sam.card_key if params.meter_no == st.meter_no else self.sam.tool_key
        session = self._authenticate(channel, key, utility)
        if session is None:
            return self._refused_illegal("the tool card is forged or from another system")
        kind = params.card_type
        if kind is CardType.PARAMETER_SETTING:
            keep = st.parameters
            if keep is not None:  # a tool card never rebinds: keep the meter's identity
                params = dataclasses.replace(
                    params,
                    meter_no=keep.meter_no,
                    customer_no=keep.customer_no,
                    card_type=keep.card_type,
                )
            st.parameters_frame = PARAMETERS.encode(params)
            self._take_tariffs(snapshot, params)
            result = InsertionResult.PARAMETERS_ONLY
        elif kind is CardType.TEST_CLEAR:
            st.events.clear()
            st.illegal_card_count = 0
            st.tamper = False
            result = InsertionResult.READ_ONLY
        else:
            result = InsertionResult.READ_ONLY
        return self._finish(result, session, snapshot, accepted=True)

    def _take_tariffs(self, snapshot: CardSnapshot, params: Parameters) -> None:
        current, backup = snapshot.tariff_sets
        flags = params.update_flags
        if flags & (UpdateFlags.CURRENT_TOU | UpdateFlags.CURRENT_TIER) and current is not None:
            self.state.current_tariff_frame = TARIFF_SET_1.encode(current)
        if flags & (UpdateFlags.BACKUP_TOU | UpdateFlags.BACKUP_TIER) and backup is not None:
            self.state.backup_tariff_frame = TARIFF_SET_1.encode(backup)

    # -- endings -------------------------------------------------------------------------

    def _authenticate(
        self, channel: CardChannel, key: SecretKey, utility: Utility
    ) -> CardSession | None:
        try:
            return open_meter_session(channel, key, utility)
        except (StatusError, SecurityError):
            return None

    def _illegal(
        self, result: InsertionResult, session: CardSession | None, snapshot: CardSnapshot
    ) -> Outcome:
        self.state.illegal_card_count += 1
        self.state.record(EventCode.ILLEGAL_CARD, self.now, int(result))
        if session is None:
            self.state.last_insertion = result
            self.save(self.state)
            return Outcome(False, result, REASONS[result], 0, self.state.remaining, False)
        return self._finish(result, session, snapshot, accepted=False)

    def _refused_illegal(self, reason: str) -> Outcome:
        self.state.illegal_card_count += 1
        self.state.record(EventCode.ILLEGAL_CARD, self.now, int(InsertionResult.WRONG_CARD))
        self.save(self.state)
        return Outcome(False, InsertionResult.WRONG_CARD, reason, 0, self.state.remaining, False)

    def _refused(self, result: InsertionResult | None, reason: str) -> Outcome:
        return Outcome(False, result, reason, 0, self.state.remaining, False)

    def _finish(
        self,
        result: InsertionResult,
        session: CardSession,
        snapshot: CardSnapshot,
        *,
        accepted: bool,
    ) -> Outcome:
        """Save, write the write-back and history, then commit a pending load."""
        st = self.state
        st.last_insertion = result
        pending = self.new_pending
        self.save(st)
        self.step("saved")
        # The card reports the meter as it is once the pending load is committed.
        after = copy.deepcopy(st)
        if pending is not None:
            commit(after, pending.purchase_count, pending.amount, self.now)
        write_back, history = report(after, result, self.now)
        has_history = snapshot.state(HISTORY).status is not FileStatus.ABSENT
        # Pulled or torn here: the pending load stays for the next insertion.
        write_meter_write_back(
            session,
            self.sam.writeback_key,
            snapshot.serial,
            write_back,
            history if has_history else None,
        )
        self.step("card-written")
        if pending is not None:
            self._commit(pending.purchase_count, pending.amount)
            self.save(st)
            self.step("committed")
        return Outcome(accepted, result, REASONS[result], self.loaded, st.remaining, True)


def commit(state: MeterState, count: int, amount: int, now: datetime) -> None:
    """Commit a purchase: credit in, count and amount remembered, nothing pending."""
    credit.credit_loaded(state, amount, now)
    state.last_purchase_count = count
    state.last_purchase_amount = amount
    state.pending = None


def report(state: MeterState, result: InsertionResult, now: datetime) -> tuple[WriteBack, History]:
    """The write-back and history (without MACs) that describe ``state``."""
    params = state.parameters
    status = meter_status(state)
    write_back = WriteBack(
        user_type=params.user_type if params is not None else UserType.SINGLE_RATE,
        ct_ratio=params.ct_ratio if params is not None else 1,
        pt_ratio=params.pt_ratio if params is not None else 1,
        meter_no=state.meter_no,
        customer_no=state.customer_no or ANY_METER,
        remaining_amount=max(0, state.remaining),
        purchase_count=state.last_purchase_count,
        overdraft_used=state.overdraft_used,
        illegal_card_count=min(state.illegal_card_count, 0xFFFF),
        meter_status=status,
        insertion_result=result,
        written_at=now.replace(microsecond=0),
    )
    history = History(
        cumulative_purchased=state.cumulative_purchased,
        cumulative_used=state.cumulative_used,
        cumulative_quantity=state.cumulative_quantity,
        status=status,
        latest_frozen_month=state.frozen_month,
        monthly_usages=tuple(state.frozen),
        events=tuple(
            dataclasses.replace(e, time=e.time.replace(microsecond=0))
            for e in reversed(state.events[-HISTORY_EVENTS:])
        ),
    )
    return write_back, history


def meter_status(state: MeterState) -> MeterStatus:
    """The status bits the write-back and history carry."""
    status = MeterStatus(0)
    supply = credit.supply_state(state)
    if not state.relay_closed:
        status |= MeterStatus.RELAY_OPEN
    if supply == "alarm1":
        status |= MeterStatus.ALARM1
    if supply == "alarm2":
        status |= MeterStatus.ALARM2
    if state.remaining < 0:
        status |= MeterStatus.OVERDRAFT
    if state.tamper:
        status |= MeterStatus.TAMPER
    if state.trip_reason == "load_limit":
        status |= MeterStatus.LOAD_LIMIT_TRIP
    return status
