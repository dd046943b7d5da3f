"""Hypothesis strategies for the values of the meter's card files (EF05 write-back, EF06 history).

Shared by the codec round-trip tests (``test_card_files``) and the bulk
decoding and MAC tests (``test_meter_report_bulk``, ``test_mac_keyed``), so
the quick decoders are checked against the very values the codec is. Times
come in several zones: the codec accepts any and decodes to UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import strategies as st

from cardlayout.files import (
    Event,
    EventCode,
    History,
    InsertionResult,
    MeterStatus,
    UserType,
    WriteBack,
)

BEIJING = timezone(timedelta(hours=8))

digits12 = st.text("0123456789", min_size=12, max_size=12)
bcd8 = st.integers(0, 99_999_999)
macs = st.binary(min_size=8, max_size=8)
zones = st.sampled_from([UTC, BEIJING, timezone(timedelta(hours=-5))])
instants = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=zones
)
second_times = instants.map(lambda t: t.replace(microsecond=0))
minute_times = instants.map(lambda t: t.replace(second=0, microsecond=0))

write_backs = st.builds(
    WriteBack,
    user_type=st.sampled_from(UserType),
    ct_ratio=st.integers(1, 999_999),
    pt_ratio=st.integers(1, 999_999),
    meter_no=digits12,
    customer_no=digits12,
    remaining_amount=st.integers(0, 2**32 - 1),
    purchase_count=st.integers(0, 2**32 - 1),
    insertion_result=st.sampled_from(InsertionResult),
    written_at=second_times,
    overdraft_used=st.integers(0, 2**32 - 1),
    illegal_card_count=st.integers(0, 2**16 - 1),
    meter_status=st.integers(0, 63).map(MeterStatus),
    mac=macs,
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    code = draw(st.sampled_from(EventCode))
    detail = draw(
        st.sampled_from(InsertionResult) if code is EventCode.ILLEGAL_CARD else st.integers(0, 255)
    )
    return Event(code, detail, draw(second_times))


histories = st.builds(
    History,
    cumulative_purchased=st.integers(0, 2**48 - 1),
    cumulative_used=st.integers(0, 2**48 - 1),
    cumulative_quantity=st.integers(0, 2**40 - 1),
    status=st.integers(0, 63).map(MeterStatus),
    latest_frozen_month=st.none()
    | st.dates(date(2000, 1, 1), date(2099, 12, 1)).map(lambda d: d.replace(day=1)),
    monthly_usages=st.lists(st.integers(0, 2**32 - 1), min_size=12, max_size=12).map(tuple),
    events=st.lists(events(), max_size=8).map(tuple),
    mac=macs,
).filter(lambda h: h != History())  # all zero would read as cleared (tested in test_card_files)
