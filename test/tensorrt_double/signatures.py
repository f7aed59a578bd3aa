"""Call signatures of the real TensorRT bindings, read from their pybind11 docstrings.

pybind11 writes every method's signature as the first docstring line, with argument names and types::

    set_tensor_address(self: tensorrt_bindings.tensorrt.IExecutionContext, name: str, memory: int) -> bool

and, for overloads, one numbered line per overload under "Overloaded function.". Properties carry
``(arg0: Class) -> type`` on their getter. These are parsed here so that a call the project makes can
be bound against the real parameter list, its argument types checked, and a stand-in of the
documented return type handed back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

OPEN, CLOSE = "[(<{", "])>}"


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: str
    has_default: bool


@dataclass(frozen=True)
class Signature:
    name: str
    parameters: tuple[Parameter, ...]  # without self
    returns: str

    def text(self) -> str:
        params = ", ".join(f"{p.name}: {p.annotation}{' = ...' if p.has_default else ''}" for p in self.parameters)
        return f"{self.name}({params}) -> {self.returns}"

    def bind(self, args: tuple, kwargs: dict) -> dict:
        """{parameter name: value} as pybind11 would bind them; TypeError naming what does not fit."""
        if len(args) > len(self.parameters):
            raise TypeError(f"{len(args)} positional arguments, {self.text()} takes {len(self.parameters)}")
        bound = {p.name: value for p, value in zip(self.parameters, args)}
        names = {p.name for p in self.parameters}
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"unexpected keyword {key!r}; {self.text()}")
            if key in bound:
                raise TypeError(f"{key!r} given twice; {self.text()}")
            bound[key] = value
        missing = [p.name for p in self.parameters if p.name not in bound and not p.has_default]
        if missing:
            raise TypeError(f"missing {', '.join(missing)}; {self.text()}")
        return bound


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split at ``separator`` outside brackets: "a: tuple[int, int], b: X = <E.A: 0>" -> 2 parts."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in OPEN:
            depth += 1
        elif char in CLOSE:
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def parse_signature_line(line: str, name: str) -> Signature | None:
    match = re.match(rf"^\s*(?:\d+\.\s*)?{re.escape(name)}\((.*)\)\s*->\s*(.+?)\s*$", line)
    if match is None:
        return None
    parameters = []
    for part in split_top_level(match.group(1)):
        param_name, _, rest = part.partition(":")
        annotation, equals, _ = rest.partition(" = ")
        parameters.append(Parameter(param_name.strip(), annotation.strip(), bool(equals)))
    if parameters and parameters[0].name in ("self", "arg0"):
        parameters = parameters[1:]
    return Signature(name, tuple(parameters), match.group(2).strip())


def signatures_of(function, name: str) -> list[Signature]:
    """Every overload's signature from a pybind11 function's docstring (empty if it has none)."""
    found = []
    for line in (getattr(function, "__doc__", None) or "").splitlines():
        signature = parse_signature_line(line, name)
        if signature is not None:
            found.append(signature)
    return found


def property_type(prop) -> str:
    """The documented type of a pybind11 property: its getter's ``(arg0: Class) -> type``."""
    doc = (getattr(prop.fget, "__doc__", None) or "").strip().splitlines()
    match = re.match(r"^\s*\(.*\)\s*->\s*(.+?)\s*$", doc[0]) if doc else None
    return match.group(1) if match else "object"


def property_setter_type(prop) -> str | None:
    """The type a pybind11 property's setter takes, None when it is read-only."""
    if prop.fset is None:
        return None
    doc = (getattr(prop.fset, "__doc__", None) or "").strip().splitlines()
    match = re.match(r"^\s*\((.*)\)\s*->", doc[0]) if doc else None
    if match is None:
        return "object"
    parts = split_top_level(match.group(1))
    return parts[-1].partition(":")[2].strip() if len(parts) > 1 else "object"
