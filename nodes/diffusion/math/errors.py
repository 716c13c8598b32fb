"""The error the math raises for a bad argument: a ValueError that says which argument it is."""

from __future__ import annotations


class ArgumentError(ValueError):
    """``argument`` is the parameter at fault, by the name the raising function gives it, so a
    caller (a node) maps it to its own input without reading the message."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument
