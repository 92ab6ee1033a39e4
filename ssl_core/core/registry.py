"""A name -> factory table shared by datasets, backbones and methods.

Modelled on timm's model registry: a decorator writes into a dict keyed by name, and an unknown
name raises an error that lists the valid ones, so a typo on the command line or in a form tells
the user what to type instead.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes or factory functions) of one kind, e.g. "method"."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} '{name}'; known: {', '.join(self.names())}"

    def unregister(self, name: str) -> None:
        """Remove an entry (tests register throwaway entries and clean up after themselves)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
