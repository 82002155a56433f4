from pathlib import Path

import pytest

from fleetmeter.collectors.transport.spool import Spool, SpooledMessage, SpoolLocked


def message(number: int, size: int = 100) -> SpooledMessage:
    return SpooledMessage(key=b"node", value=number.to_bytes(4, "big") + b"x" * size, headers=[("h", b"v")], rows=8)


def numbers(spool: Spool) -> list[int]:
    return [int.from_bytes(m.value[:4], "big") for _, m in spool.oldest(1000)]


def test_messages_come_back_oldest_first_and_are_gone_once_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    for number in range(5):
        spool.append(message(number))
    batch = spool.oldest(2)
    assert [int.from_bytes(m.value[:4], "big") for _, m in batch] == [0, 1]
    assert batch[0][1].headers == [("h", b"v")] and batch[0][1].key == b"node"
    for entry, _ in batch:
        spool.remove(entry)
    assert numbers(spool) == [2, 3, 4] and spool.messages == 3


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    for number in range(30):
        spool.append(message(number))
    kept = numbers(spool)
    assert kept == list(range(30 - len(kept), 30))
    assert spool.bytes <= 1000
    assert spool.dropped_messages == 30 - len(kept) and spool.dropped_rows == 8 * spool.dropped_messages


def test_a_restarted_spool_resumes_in_order_and_keeps_numbering(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=10**6)
    for number in range(3):
        first.append(message(number))
    first.close()
    (tmp_path / "00000000000000000099.tmp").write_bytes(b"half a file")
    second = Spool(tmp_path, max_bytes=10**6)
    second.append(message(3))
    assert numbers(second) == [0, 1, 2, 3]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_damaged_file_is_quarantined_and_counted_never_returned(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    for number in range(3):
        spool.append(message(number))
    damaged = sorted(tmp_path.glob("*.msg"))[1]
    damaged.write_bytes(damaged.read_bytes()[:-7] + b"garbage")
    assert numbers(spool) == [0, 2]
    assert spool.corrupt_messages == 1 and (tmp_path / "corrupt" / damaged.name).exists()
    spool.close()
    assert numbers(Spool(tmp_path, max_bytes=10**6)) == [0, 2]


def test_two_collectors_cannot_share_a_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=10**6)
    with pytest.raises(SpoolLocked, match="in use by another collector"):
        Spool(tmp_path, max_bytes=10**6)
    first.close()
    Spool(tmp_path, max_bytes=10**6).close()


def test_messages_being_sent_are_not_dropped_for_space_until_the_sender_gives_them_up(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    for number in range(3):
        spool.append(message(number))
    sending = [int.from_bytes(m.value[:4], "big") for _, m in spool.oldest(2)]
    for number in range(3, 30):
        spool.append(message(number))
    kept = numbers(spool)
    assert kept[:2] == sending == [0, 1]  # may still be delivered: never counted as dropped
    assert spool.dropped_messages == 30 - len(kept) and 2 not in kept
    spool.unsent()
    spool.append(message(30))
    assert 0 not in numbers(spool)
