"""check_connected: a pushed tip is accepted only if every object it needs is in the store."""

from __future__ import annotations

import pytest
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Blob, Commit, Tree

from gitserver.connectivity import Unconnected, check_connected


def blob(store: MemoryObjectStore | None, data: bytes) -> Blob:
    b = Blob.from_string(data)
    if store is not None:
        store.add_object(b)
    return b


def tree(store: MemoryObjectStore | None, entries: dict[bytes, Blob | Tree]) -> Tree:
    t = Tree()
    for name, obj in entries.items():
        t.add(name, 0o040000 if isinstance(obj, Tree) else 0o100644, obj.id)
    if store is not None:
        store.add_object(t)
    return t


def commit(store: MemoryObjectStore | None, tree_: Tree, parents: list[Commit], when: int) -> Commit:
    c = Commit()
    c.tree = tree_.id
    c.parents = [p.id for p in parents]
    c.author = c.committer = b"T <t@example.com>"
    c.author_time = c.commit_time = when
    c.author_timezone = c.commit_timezone = 0
    c.message = b"m"
    if store is not None:
        store.add_object(c)
    return c


@pytest.fixture
def store() -> MemoryObjectStore:
    return MemoryObjectStore()


def test_complete_history_is_connected(store: MemoryObjectStore) -> None:
    sub = tree(store, {b"x": blob(store, b"x")})
    c1 = commit(store, tree(store, {b"a": blob(store, b"1"), b"dir": sub}), [], 100)
    c2 = commit(store, tree(store, {b"a": blob(store, b"2"), b"dir": sub}), [c1], 200)
    assert check_connected(store, [c2.id], []) == 2


def test_walk_stops_at_what_refs_already_reach(store: MemoryObjectStore) -> None:
    c1 = commit(store, tree(store, {b"a": blob(store, b"1")}), [], 100)
    c2 = commit(store, tree(store, {b"a": blob(store, b"2")}), [c1], 200)
    c3 = commit(store, tree(store, {b"a": blob(store, b"3")}), [c2], 300)
    assert check_connected(store, [c3.id], [c2.id]) == 1
    # an old commit that a ref already reaches costs nothing
    assert check_connected(store, [c1.id], [c3.id]) == 0


def test_unchanged_subtrees_of_a_trusted_parent_are_not_opened(store: MemoryObjectStore) -> None:
    big = tree(None, {b"f": blob(None, b"never stored")})  # "reachable from a ref": trusted, not looked up
    c1 = commit(store, tree(store, {b"big": big}), [], 100)
    c2 = commit(store, tree(store, {b"big": big, b"new": blob(store, b"n")}), [c1], 200)
    assert check_connected(store, [c2.id], [c1.id]) == 1


def test_missing_tip(store: MemoryObjectStore) -> None:
    with pytest.raises(Unconnected, match="missing commit " + "1" * 40):
        check_connected(store, [b"1" * 40], [])


def test_tip_that_is_not_a_commit(store: MemoryObjectStore) -> None:
    b = blob(store, b"data")
    with pytest.raises(Unconnected, match=f"commit {b.id.decode()} is a blob"):
        check_connected(store, [b.id], [])


def test_missing_parent(store: MemoryObjectStore) -> None:
    orphan_parent = commit(None, tree(store, {}), [], 50)
    c = commit(store, tree(store, {}), [orphan_parent], 100)
    with pytest.raises(Unconnected, match=f"missing commit {orphan_parent.id.decode()}"):
        check_connected(store, [c.id], [])


def test_missing_parent_is_fine_at_a_shallow_boundary(store: MemoryObjectStore) -> None:
    orphan_parent = commit(None, tree(store, {}), [], 50)
    c = commit(store, tree(store, {b"a": blob(store, b"a")}), [orphan_parent], 100)
    assert check_connected(store, [c.id], [], shallow=[c.id]) == 1


def test_missing_tree_blob_and_subtree(store: MemoryObjectStore) -> None:
    c = commit(store, tree(None, {}), [], 100)
    with pytest.raises(Unconnected, match="missing tree"):
        check_connected(store, [c.id], [])
    c = commit(store, tree(store, {b"a": blob(None, b"gone")}), [], 100)
    with pytest.raises(Unconnected, match="missing blob"):
        check_connected(store, [c.id], [])
    c = commit(store, tree(store, {b"d": tree(None, {b"a": blob(store, b"a")})}), [], 100)
    with pytest.raises(Unconnected, match="missing tree"):
        check_connected(store, [c.id], [])


def test_a_changed_path_under_a_trusted_parent_is_still_checked(store: MemoryObjectStore) -> None:
    c1 = commit(store, tree(store, {b"d": tree(store, {b"a": blob(store, b"1")})}), [], 100)
    c2 = commit(store, tree(store, {b"d": tree(store, {b"a": blob(None, b"2 missing")})}), [c1], 200)
    with pytest.raises(Unconnected, match="missing blob"):
        check_connected(store, [c2.id], [c1.id])


def test_merge_with_clock_skew_is_still_checked(store: MemoryObjectStore) -> None:
    base = commit(store, tree(store, {b"a": blob(store, b"0")}), [], 100)
    side = commit(store, tree(store, {b"b": blob(None, b"missing")}), [base], 500)  # committed "in the future"
    merge = commit(store, tree(store, {b"a": blob(store, b"0")}), [base, side], 300)
    with pytest.raises(Unconnected, match="missing blob"):
        check_connected(store, [merge.id], [base.id])


def test_gitlinks_are_not_followed(store: MemoryObjectStore) -> None:
    t = Tree()
    t.add(b"sub", 0o160000, b"2" * 40)
    store.add_object(t)
    c = commit(store, t, [], 100)
    assert check_connected(store, [c.id], []) == 1
