"""Per-node sequence numbers: they rise by one per scrape and survive a restart, however the file is treated."""

from __future__ import annotations

import json
from pathlib import Path

from fleetmeter.collectors.sequences import NodeSequences


def test_numbers_continue_across_a_restart_and_the_file_grows_with_the_nodes(tmp_path: Path) -> None:
    path = tmp_path / "sequences.json"
    nodes = [f"node-{i:04d}" for i in range(300)]
    first = NodeSequences(path)
    for scrape in (1, 2, 3):
        assert {first.next(node) for node in nodes} == {scrape}
        first.save()
    assert path.stat().st_size > 4096  # 300 nodes outgrew the first block: replaced by a larger file
    second = NodeSequences(path)  # the first never closed: as after a crash
    assert second.next("node-0000") == 4 and second.next("node-0299") == 4 and second.next("new") == 1


def test_a_file_removed_or_replaced_behind_the_daemon_is_written_again(tmp_path: Path) -> None:
    path = tmp_path / "sequences.json"
    sequences = NodeSequences(path)
    for _ in range(5):
        sequences.next("a")
        sequences.save()
    path.unlink()
    sequences.next("a")
    sequences.save()
    assert json.loads(path.read_text()) == {"a": 6}
    path.write_text('{"a": 1}')  # replaced: another inode
    sequences.next("a")
    sequences.save()
    assert json.loads(path.read_text()) == {"a": 7}
    sequences.close()
    assert NodeSequences(path).next("a") == 8


def test_a_file_that_is_not_a_map_of_numbers_starts_the_numbers_again(tmp_path: Path) -> None:
    path = tmp_path / "sequences.json"
    for text in ("[1, 2]", '{"a": null}', '{"a": [1]}', "\x00\x00"):
        path.write_text(text)
        assert NodeSequences(path).next("a") == 1, text


def test_a_restart_writes_into_the_file_it_found(tmp_path: Path) -> None:
    """On a full disk a new file cannot be made; the one the last run left can still be written."""
    path = tmp_path / "sequences.json"
    first = NodeSequences(path)
    first.next("a")
    first.save()
    first.close()
    inode = path.stat().st_ino
    second = NodeSequences(path)
    second.next("a")
    second.save()
    assert path.stat().st_ino == inode and json.loads(path.read_text()) == {"a": 2}
