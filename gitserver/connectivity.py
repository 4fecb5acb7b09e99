"""The connectivity check dulwich lacks: every object a pushed tip needs must be in the store.

Like C git's `rev-list --objects NEW --not --all`: commits reachable from the current refs are
trusted (they were checked when those refs moved); everything else reachable from the new tips is
walked, and each commit, tree and blob must exist. Trees are walked against the trees of trusted
parents, so a one-file change costs a handful of lookups, not the whole tree.
"""

from __future__ import annotations

import heapq
import itertools
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

from dulwich.objects import Commit, ObjectID, ShaFile, Tree

if TYPE_CHECKING:
    from dulwich.object_store import BaseObjectStore

GITLINK = 0o160000  # a submodule's commit: lives in another repository
_Obj = TypeVar("_Obj", bound=ShaFile)


class Unconnected(Exception):
    """A pushed tip needs an object the store does not have (message: one line for `ng`)."""


def _load(store: BaseObjectStore, sha: ObjectID, kind: type[_Obj], what: str) -> _Obj:
    try:
        obj = store[sha]
    except KeyError:
        raise Unconnected(f"missing {what} {sha.decode()}") from None
    if not isinstance(obj, kind):
        raise Unconnected(f"{what} {sha.decode()} is a {obj.type_name.decode()}")
    return obj


def check_connected(
    store: BaseObjectStore, tips: Iterable[ObjectID], have: Iterable[ObjectID], shallow: Iterable[ObjectID] = ()
) -> int:
    """Raise Unconnected unless everything reachable from `tips` and not from `have` is in `store`.

    `shallow` commits are boundaries: their parents need not exist. Returns the number of commits checked.
    """
    boundaries = set(shallow)
    commits: dict[ObjectID, Commit] = {}
    trusted: dict[ObjectID, bool] = {}
    heap: list[tuple[int, int, ObjectID]] = []
    in_heap: set[ObjectID] = set()
    order = itertools.count()
    pending = 0  # untrusted commits still in the heap: the walk ends when none are left

    def add(sha: ObjectID, is_trusted: bool) -> None:
        nonlocal pending
        seen = trusted.get(sha)
        if seen is None:
            if is_trusted:
                found = store[sha] if sha in store else None
                if not isinstance(found, Commit):
                    return  # beyond a shallow boundary of the server's own history
                commit = found
            else:
                commit = _load(store, sha, Commit, "commit")
            commits[sha], trusted[sha] = commit, is_trusted
            pending += not is_trusted
            in_heap.add(sha)
            heapq.heappush(heap, (-commit.commit_time, next(order), sha))
        elif is_trusted and not seen:
            trusted[sha] = True
            if sha in in_heap:
                pending -= 1

    for sha in have:
        add(sha, True)
    for sha in tips:
        add(sha, False)

    # Newest first, so a commit is reached after its trusted descendants marked it (modulo clock skew,
    # which only costs extra checking, never a missed object).
    walked: list[ObjectID] = []
    while heap and pending:
        _, _, sha = heapq.heappop(heap)
        in_heap.discard(sha)
        if not trusted[sha]:
            pending -= 1
            walked.append(sha)
        if sha in boundaries:
            continue
        for parent in commits[sha].parents:
            add(parent, trusted[sha])

    checked: set[ObjectID] = set()
    checked_trees: set[ObjectID] = set()
    checked_blobs: set[ObjectID] = set()
    for sha in reversed(walked):  # parents before children, so checked parents serve as bases
        if trusted[sha]:
            continue
        commit = commits[sha]
        bases = [commits[p].tree for p in commit.parents if p in commits and (trusted[p] or p in checked)]
        _check_tree(store, commit.tree, bases, checked_trees, checked_blobs)
        checked.add(sha)
    return len(checked)


def _check_tree(
    store: BaseObjectStore,
    root: ObjectID,
    bases: list[ObjectID],
    checked_trees: set[ObjectID],
    checked_blobs: set[ObjectID],
) -> None:
    """Every object under tree `root` exists; subtrees equal to a trusted base's at the same path are skipped."""
    stack: list[tuple[ObjectID, list[ObjectID]]] = [(root, bases)]
    while stack:
        sha, base_shas = stack.pop()
        if sha in checked_trees or sha in base_shas:
            continue
        tree = _load(store, sha, Tree, "tree")
        base_entries: list[dict[bytes, tuple[int, ObjectID]]] = []
        for b in base_shas:
            try:
                bt = store[b]
            except KeyError:
                continue
            if isinstance(bt, Tree):
                base_entries.append({e.path: (e.mode, e.sha) for e in bt.iteritems()})
        for entry in tree.iteritems():
            name, mode, child = entry.path, entry.mode, entry.sha
            if mode == GITLINK:
                continue
            same = [be[name] for be in base_entries if name in be]
            if any(s == child for _, s in same):
                continue
            if stat.S_ISDIR(mode):
                stack.append((child, [s for m, s in same if stat.S_ISDIR(m)]))
            elif child not in checked_blobs:
                if child not in store:
                    raise Unconnected(f"missing blob {child.decode()}")
                checked_blobs.add(child)
        checked_trees.add(sha)
