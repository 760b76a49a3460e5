"""Slot assignment: stable, dense enough, deterministic."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hakeeper.loadbalancerpool.haproxy import slots

names = st.text(alphabet="abcdefghij-0123456789", min_size=1, max_size=6)
name_sets = st.sets(names, max_size=70)


def is_power_of_two(n: int) -> bool:
    return n & (n - 1) == 0


@given(name_sets)
def test_every_backend_gets_its_own_slot_within_capacity(backends) -> None:
    result = slots.assign(backends)
    assert set(result.slots) == backends
    assert len(set(result.slots.values())) == len(backends)
    assert all(1 <= s <= result.capacity for s in result.slots.values())
    assert is_power_of_two(result.capacity) and result.capacity >= max(slots.MIN_SLOTS, len(backends))


@given(name_sets, st.randoms())
def test_assignment_is_deterministic_and_ignores_order(backends, rnd) -> None:
    shuffled = list(backends)
    rnd.shuffle(shuffled)
    assert slots.assign(shuffled) == slots.assign(sorted(backends))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove"]), st.lists(names, min_size=1, max_size=12)),
                min_size=1, max_size=25))
def test_a_backend_keeps_its_slot_while_it_exists(steps) -> None:
    """Through any sequence of scale-ups and scale-downs, a backend never changes its slot, not
    even when the capacity shrinks (issue 14 field fault b: compaction used to move the backends
    beyond the new capacity, and their cookie-sticky clients with them)."""
    present: set[str] = set()
    previous = slots.assign(present)
    for action, batch in steps:
        present = present | set(batch) if action == "add" else present - set(batch)
        result = slots.assign(present, previous.slots)
        for name, slot in result.slots.items():
            if name in previous.slots:
                assert slot == previous.slots[name], (name, previous, result)
        if result.capacity < previous.capacity:
            assert len(present) * 4 <= previous.capacity  # shrinks only when mostly empty
        previous = result


@given(name_sets, name_sets)
def test_new_backends_fill_the_lowest_free_slots(old, new) -> None:
    first = slots.assign(old)
    result = slots.assign(old | new, first.slots)
    if result.capacity == first.capacity:
        added = sorted(new - old)
        free = sorted(set(range(1, result.capacity + 1)) - set(first.slots.values()))
        assert [result.slots[n] for n in added] == free[: len(added)]


def test_freed_slots_are_reused() -> None:
    first = slots.assign(["a", "b", "c"])
    assert first.slots == {"a": 1, "b": 2, "c": 3}
    second = slots.assign(["a", "c", "d"], first.slots)
    assert second.slots == {"a": 1, "c": 3, "d": 2}


def test_capacity_grows_by_doubling_and_shrinks_with_hysteresis() -> None:
    nine = [f"b{i:02}" for i in range(9)]
    grown = slots.assign(nine)
    assert grown.capacity == 16
    five = slots.assign(nine[:5], grown.slots)
    assert five.capacity == 16 and five.slots == {n: grown.slots[n] for n in nine[:5]}
    four = slots.assign(nine[:4], five.slots)
    assert four.capacity == 8
    assert four.slots == {n: grown.slots[n] for n in nine[:4]}  # their slots were below 8 already


def test_a_pool_hovering_at_a_power_of_two_keeps_its_capacity() -> None:
    current = slots.assign([f"b{i}" for i in range(9)])
    for count in (8, 9, 8, 9, 7, 9):
        current = slots.assign([f"b{i}" for i in range(count)], current.slots)
        assert current.capacity == 16


def test_a_plain_mapping_as_previous_keeps_slots_but_not_capacity() -> None:
    kept = slots.assign(["a", "c", "d", "e", "f"], {"a": 1, "b": 5, "c": 12, "d": 2, "e": 3, "f": 4})
    assert kept.slots == {"a": 1, "c": 12, "d": 2, "e": 3, "f": 4} and kept.capacity == 16
    assert slots.assign(["a"], {"a": 1, "b": 12}).capacity == 8


def test_shrinking_moves_no_backend_and_waits_for_the_high_slots_to_free() -> None:
    many = [f"b{i:02}" for i in range(20)]
    full = slots.assign(many)
    assert full.capacity == 32
    keep = ["b00", "b05", "b18", "b19"]  # 20 -> 4 backends, two of them in slots past 8
    shrunk = slots.assign(keep, full.slots)
    assert shrunk.slots == {n: full.slots[n] for n in keep} and shrunk.capacity == 32
    low = slots.assign(["b00", "b05"], shrunk.slots)  # the high slots are free now
    assert low.capacity == 8 and low.slots == {"b00": 1, "b05": 6}


def test_a_slot_claimed_twice_in_previous_goes_to_one_backend() -> None:
    result = slots.assign(["a", "b"], {"a": 1, "b": 1})
    assert result.slots == {"a": 1, "b": 2}


def test_server_names() -> None:
    assert slots.server_name(3) == "s3"
    assert slots.assign(["x"]).slot_name("x") == "s1"
