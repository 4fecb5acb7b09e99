"""docker-local logs: docker timestamps made sortable, and history merged across containers."""

from __future__ import annotations

from schedulers.docker_local.logs import key_epoch, merge_tail, split_stamped, ts_key


def test_ts_key_pads_trimmed_nanoseconds():
    a = ts_key("2024-05-01T10:00:00.5Z")
    b = ts_key("2024-05-01T10:00:00.123456789Z")
    c = ts_key("2024-05-01T10:00:01Z")
    assert a == "2024-05-01T10:00:00.500000000"
    assert b < a < c


def test_key_epoch_round_trips_to_the_microsecond():
    assert abs(key_epoch(ts_key("1970-01-01T00:00:10.25Z")) - 10.25) < 1e-6
    assert key_epoch("garbage") == 0.0


def test_split_stamped():
    assert split_stamped(b"2024-05-01T10:00:00.5Z hello world\r") == ("2024-05-01T10:00:00.500000000", "hello world")
    assert split_stamped(b"2024-05-01T10:00:00Z ")[1] == ""


def test_merge_tail_orders_across_containers_and_keeps_the_last_n():
    web = [(ts_key("2024-05-01T10:00:00.1Z"), "web.1: a"), (ts_key("2024-05-01T10:00:00.3Z"), "web.1: c")]
    worker = [(ts_key("2024-05-01T10:00:00.2Z"), "worker.1: b"), (ts_key("2024-05-01T10:00:00.4Z"), "worker.1: d")]
    assert list(merge_tail([web, worker], None)) == ["web.1: a", "worker.1: b", "web.1: c", "worker.1: d"]
    assert list(merge_tail([web, worker], 2)) == ["web.1: c", "worker.1: d"]
    assert list(merge_tail([web, worker], 0)) == []
    assert list(merge_tail([], 5)) == []
