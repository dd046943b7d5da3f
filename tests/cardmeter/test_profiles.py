"""Load profiles: synthetic shapes, determinism, and the CSV reader's refusals."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cardmeter.profiles import PROFILES, ProfileError, commercial, from_csv, residential

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 3, 2, tzinfo=SHANGHAI)


def by_local_hour(intervals: list[tuple[datetime, int]], hours: range) -> list[int]:
    return [q for t, q in intervals if t.astimezone(SHANGHAI).hour in hours]


def mean(values: list[int]) -> int:
    return sum(values) // len(values)


def test_profiles_are_utc_quarter_hours_and_deterministic() -> None:
    for name, profile in PROFILES.items():
        intervals = list(profile(MONDAY, 2, 11))
        assert len(intervals) == 2 * 96, name
        assert intervals[0][0] == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
        assert all(t.tzinfo is UTC for t, _ in intervals)
        steps = {b[0] - a[0] for a, b in itertools.pairwise(intervals)}
        assert steps == {timedelta(minutes=15)}
        assert all(isinstance(q, int) and q >= 0 for _, q in intervals)
        assert intervals == list(profile(MONDAY, 2, 11)), "same seed, same profile"
        assert intervals != list(profile(MONDAY, 2, 12)), "another seed, another profile"
    assert list(residential(MONDAY, 0, 1)) == []


def test_residential_shape() -> None:
    week = list(residential(MONDAY, 7, seed=3))
    evening = by_local_hour(week, range(18, 22))
    night = by_local_hour(week, range(1, 5))
    assert all(5 <= q <= 50 for q in evening)  # 0.05 .. 0.50 kWh per 15 min
    assert max(evening) >= 40
    assert mean(evening) > 4 * mean(night)
    daily = sum(q for _, q in week) // 7
    assert 500 <= daily <= 1_500  # 5 .. 15 kWh a day


def test_commercial_shape() -> None:
    week = list(commercial(MONDAY, 7, seed=3))
    weekdays = [(t, q) for t, q in week if t.astimezone(SHANGHAI).weekday() < 5]
    sunday = [(t, q) for t, q in week if t.astimezone(SHANGHAI).weekday() == 6]
    business = by_local_hour(weekdays, range(9, 17))
    assert mean(business) > 5 * mean(by_local_hour(weekdays, range(0, 5)))
    assert mean(business) > 5 * mean(by_local_hour(sunday, range(9, 17)))


def test_profile_needs_an_aware_start() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        list(residential(datetime(2026, 3, 2), 1, 1))


# -- CSV -------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_reads_units_to_hundredths_and_times_to_utc(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp,quantity\n"
        "2026-03-02T08:00:00+08:00,0.25\n"
        "\n"
        "2026-03-02T00:15:00Z,1\n"
        "2026-03-02T00:30:00+00:00, 12.5 \n",
    )
    assert from_csv(path) == [
        (datetime(2026, 3, 2, 0, 0, tzinfo=UTC), 25),
        (datetime(2026, 3, 2, 0, 15, tzinfo=UTC), 100),
        (datetime(2026, 3, 2, 0, 30, tzinfo=UTC), 1_250),
    ]
    assert from_csv(write(tmp_path, "2026-03-02T00:00:00Z,0.00\n")) == [
        (datetime(2026, 3, 2, tzinfo=UTC), 0)
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2026-03-02T00:15:00Z,0.255", "line 3: quantity '0.255' has more than 2 decimals"),
        ("2026-03-02T00:15:00Z,-0.25", "line 3: quantity '-0.25' is negative"),
        ("2026-03-02T00:15:00,0.25", "line 3: timestamp '2026-03-02T00:15:00' has no UTC offset"),
        ("yesterday,0.25", "line 3: timestamp 'yesterday' is not ISO 8601"),
        ("2026-03-02T00:15:00Z,lots", "line 3: quantity 'lots' is not a decimal number"),
        ("2026-03-02T00:15:00Z,NaN", "line 3: quantity 'NaN' is not a finite number"),
        ("2026-03-02T00:15:00Z,0.25,x", "line 3: expected 2 fields"),
        ("2026-03-02T00:00:00Z,0.25", "line 3: timestamp .* is not after .*line 2"),
    ],
)
def test_csv_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, f"timestamp,quantity\n2026-03-02T00:00:00Z,0.25\n{line}\n")
    with pytest.raises(ProfileError, match=message) as info:
        from_csv(path)
    assert str(path) in str(info.value)
