"""The exceptions of component actors."""

from __future__ import annotations

__all__ = ["ComponentError", "ComponentFailed", "ComponentTrap"]


class ComponentError(Exception):
    """The file cannot be used as a component actor (not a component, unmet import, no handlers)."""


class ComponentFailed(Exception):
    """Raised for a handler's ``err``: an ordinary handler failure, like a Python actor's exception."""


class ComponentTrap(Exception):
    """A handler trapped (fuel, memory, time limit, or a fault); the actor's instance is rebuilt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
