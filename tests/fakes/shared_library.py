"""Stand-ins for a vendor's C library under the vendor's real Python package.

The real packages (amdsmi, pyhlml) load their ``.so`` with ``ctypes.CDLL`` and call its C functions with
ctypes arguments: out-parameters as ``ctypes.byref(struct)`` and buffers as ctypes arrays, a status code
as the return value. A :class:`FakeLibrary` answers those calls in Python, so everything above the C
boundary (argument checks, struct decoding, "N/A" handling, exception types) is the vendor's own code.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import pytest


class CFunction:
    """What ``getattr(cdll, name)`` gives: callable, and takes the ``restype``/``argtypes`` the binding sets."""

    def __init__(self, call: Callable[..., int]) -> None:
        self._call = call

    def __call__(self, *args: Any) -> int:
        return self._call(*args)


class FakeDevice(Protocol):
    unsupported: set[str]  # C functions that answer "not supported" for this device
    failing: dict[str, int]  # C function -> the status it answers for this device


class InvalidArgument(Exception):
    """Raised by a fake C function's body for an argument the real library rejects (an enum out of range)."""


class FakeLibrary:
    """Subclasses define each C function as a method named ``c_<symbol>``; any other symbol answers
    ``missing_status``, as a library built without that feature does."""

    missing_status: int = 2  # the vendor's "not supported"
    invalid_status: int = 1  # the vendor's "invalid argument": an unknown handle or an enum out of range

    def device_of(self, handle: Any) -> FakeDevice | None:
        """The device behind a handle, or None for a handle the library never gave out."""
        raise NotImplementedError

    def __init__(self) -> None:
        self._symbols: dict[str, CFunction] = {}
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> CFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        symbols = self.__dict__["_symbols"]
        if name not in symbols:
            implementation = getattr(type(self), "c_" + name, None)
            bound = (lambda *args: self.missing_status) if implementation is None else implementation.__get__(self)
            symbols[name] = CFunction(self._recorded(name, bound))
        return symbols[name]

    def _recorded(self, name: str, call: Callable[..., int]) -> Callable[..., int]:
        def recorded(*args: Any) -> int:
            self.calls.append(name)
            return call(*args)
        return recorded


def device_function(fill: Callable[..., None]) -> Callable[..., int]:
    """A C function whose first argument is a device handle: it answers the device's "not supported" or
    failing status where set, else lets ``fill(self, device, *out_parameters)`` write the results."""
    symbol = fill.__name__.removeprefix("c_")

    @functools.wraps(fill)
    def c_function(self: FakeLibrary, handle: Any, *args: Any) -> int:
        device = self.device_of(handle)
        if device is None:
            return self.invalid_status
        if symbol in device.failing:
            return device.failing[symbol]
        if symbol in device.unsupported:
            return self.missing_status
        try:
            fill(self, device, *args)
        except InvalidArgument:
            return self.invalid_status
        return 0
    return c_function


def check_enum(value: Any, count: int) -> int:
    """An enum argument as the C function receives it (a plain int or a ctypes int), checked against its range."""
    number = getattr(value, "value", value)
    if not isinstance(number, int) or not 0 <= number < count:
        raise InvalidArgument(f"{number!r} is not in 0..{count - 1}")
    return number


Library = TypeVar("Library", bound=FakeLibrary)


def out(reference: Any) -> Any:
    """The object a ``ctypes.byref(...)`` argument points at."""
    return reference._obj


@contextmanager
def loaded_as(monkeypatch: pytest.MonkeyPatch, file_name: str, library: Library, package: str) -> Iterator[Library]:
    """Make ``ctypes.CDLL`` return ``library`` for ``file_name`` while the vendor ``package`` is imported
    afresh; other libraries load as usual."""
    real_cdll = ctypes.CDLL

    def cdll(name: Any, *args: Any, **kwargs: Any) -> Any:
        return library if str(name).endswith(file_name) else real_cdll(name, *args, **kwargs)

    def forget_package() -> None:
        for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[module]

    forget_package()
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    try:
        yield library
    finally:
        forget_package()
