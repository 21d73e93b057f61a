"""The one use of flatbuffers' private table accessor (`_tab`), written for flatbuffers 25.12.19.

The generated `Buffer.DataAsNumpy()` copies the whole vector; reading a multi-MB weight
buffer's place (offset, length) in the file needs the table's own `Offset`/`Vector`/
`VectorLen`, which the generated code keeps on `_tab`. tests/test_compat.py pins
the version.
"""

from __future__ import annotations

__all__ = ["WRITTEN_FOR", "inline_vector"]

WRITTEN_FOR = "25.12.19"


def inline_vector(table, field_slot: int) -> tuple[int, int] | None:
    """`(start, length)` in the file of the vector in field `field_slot` of a generated table, or None.

    `field_slot` is the vtable offset of the field (4 for field 0, 6 for field 1, ...).
    """
    tab = table._tab
    offset = tab.Offset(field_slot)
    if not offset:
        return None
    return tab.Vector(offset), tab.VectorLen(offset)
