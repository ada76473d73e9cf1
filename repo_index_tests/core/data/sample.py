"""A small inventory module used as a chunker fixture."""

from __future__ import annotations

import dataclasses
from typing import Iterable

DEFAULT_LIMIT = 10


@dataclasses.dataclass
class Item:
    """One stock item."""

    name: str
    count: int = 0

    def restock(self, amount: int) -> None:
        # Negative amounts are a bug in the caller.
        if amount < 0:
            raise ValueError("amount must be >= 0")
        self.count += amount

    @property
    def empty(self) -> bool:
        return self.count == 0


class Inventory:
    def __init__(self, items: Iterable[Item] = ()) -> None:
        self._items = {item.name: item for item in items}

    def add(self, item: Item) -> None:
        self._items[item.name] = item

    async def refresh(self, source) -> int:
        n = 0
        async for name, count in source:
            self._items.setdefault(name, Item(name)).restock(count)
            n += 1
        return n

    class Report:
        def render(self, inventory: "Inventory") -> str:
            return "\n".join(f"{i.name}: {i.count}" for i in inventory._items.values())


def low_stock(inventory: Inventory, limit: int = DEFAULT_LIMIT) -> list[Item]:
    return [i for i in inventory._items.values() if i.count < limit]


if __name__ == "__main__":
    print(low_stock(Inventory([Item("apple", 3)])))
