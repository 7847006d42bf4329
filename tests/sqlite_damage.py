"""Test helper: damage one page of a table in an SQLite file, the way a bad disk does.

The table's leaf pages are found by walking its B-tree from the root page ``sqlite_schema`` names (file format:
https://www.sqlite.org/fileformat2.html §1.6), so the tests need no ``dbstat`` module.
"""

from __future__ import annotations

import random
import sqlite3
import struct

LEAF_TABLE, INTERIOR_TABLE, LEAF_INDEX, INTERIOR_INDEX = 0x0D, 0x05, 0x0A, 0x02


def leaf_pages(path: str, table: str) -> list[int]:
    """The leaf page numbers of ``table`` (a rowid or WITHOUT ROWID table), in key order."""
    peek = sqlite3.connect(path)
    try:
        peek.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
        root = peek.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0]
    finally:
        peek.close()
    with open(path, "rb") as file:
        data = file.read()
    page_size = struct.unpack(">H", data[16:18])[0] or 65536

    def walk(page: int) -> list[int]:
        base = (page - 1) * page_size
        header = base + (100 if page == 1 else 0)
        kind = data[header]
        if kind in (LEAF_TABLE, LEAF_INDEX):
            return [page]
        cells = struct.unpack(">H", data[header + 3 : header + 5])[0]
        right = struct.unpack(">I", data[header + 8 : header + 12])[0]
        children = []
        for i in range(cells):
            offset = struct.unpack(">H", data[header + 12 + 2 * i : header + 14 + 2 * i])[0]
            children.append(struct.unpack(">I", data[base + offset : base + offset + 4])[0])
        assert kind in (INTERIOR_TABLE, INTERIOR_INDEX), f"page {page}: not a B-tree page ({kind})"
        return [leaf for child in [*children, right] for leaf in walk(child)]

    return walk(root)


def damage_page(path: str, page: int, *, seed: int = 15) -> None:
    """Overwrite page ``page`` of the (checkpointed, closed) file with garbage."""
    with open(path, "r+b") as file:
        page_size = struct.unpack(">H", file.read(18)[16:18])[0] or 65536
        file.seek((page - 1) * page_size)
        file.write(random.Random(seed).randbytes(page_size))


def damage_table(path: str, table: str, *, which: float = 0.5) -> int:
    """Damage the leaf of ``table`` at the fraction ``which`` of its key order; returns the page number."""
    leaves = leaf_pages(path, table)
    page = leaves[min(len(leaves) - 1, int(len(leaves) * which))]
    damage_page(path, page)
    return page
