"""ConfigChanged: one Event per burst of config changes (issue 17, bench/scale)."""

from __future__ import annotations

from hakeeper.loadbalancerpool.notices import ConfigNotices


def test_a_change_after_a_quiet_spell_is_posted_at_once_and_a_burst_as_one_event() -> None:
    now = [0.0]
    notices = ConfigNotices(every=10.0, clock=lambda: now[0])
    assert notices.take() == (None, None)  # nothing changed
    notices.changed("config a: 1/1 backends ready")
    assert notices.take() == ("config a: 1/1 backends ready", None)
    posted = []
    for i in range(50):  # 50 changes in the next 5 s
        now[0] = 0.1 * (i + 1)
        notices.changed(f"config {i}: 1/1 backends ready")
        message, held = notices.take()
        assert message is None and held is not None
        posted.append(held)
    assert posted[-1] == 10.0 - 5.0  # when the held one is due: the pass comes back then
    now[0] = 10.0
    assert notices.take() == ("config 49: 1/1 backends ready (the last of 50 changes)", None)
    assert notices.take() == (None, None)
    now[0] = 30.0
    notices.changed("config b: 0/1 backends ready")
    assert notices.take() == ("config b: 0/1 backends ready", None)
