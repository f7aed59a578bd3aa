"""A ``tensorrt`` module double made from the real bindings of one TensorRT version.

``CheckedTensorRT(real_module, behaviour)`` stands in for ``import tensorrt``. Every attribute the
project touches must exist on the real module or class (TensorRT 11 has no ``BuilderFlag.FP16``: the
double raises AttributeError exactly where the real one would). Every call is bound against the real
pybind11 signature (argument count, names, keywords) and its arguments are checked against the
documented types, more strictly than pybind11 does: an ``int`` parameter takes an int, not an object
relying on implicit ``__int__``/``__index__`` conversion. A call returns a stand-in of the documented
return type (a ``StandIn`` of the real class, a real enum member, a default number), unless
``behaviour`` supplies the few values the code needs to go on (tensor names and shapes, the
serialized engine), keyed "Class.member"; those values are checked against the documented type too.
Real enums, ``Dims`` and pure-Python helpers (``nptype``) are the real ones. Every call is logged in
``calls`` as (qualified name, bound arguments).
"""
from __future__ import annotations

import importlib.machinery
import types

import numpy as np

from .signatures import property_setter_type, property_type, signatures_of

PREFIXES = ("tensorrt_bindings.tensorrt.", "tensorrt.")
INT_TYPES = ("int", "typing.SupportsInt")
FLOAT_TYPES = ("float", "typing.SupportsFloat")
BUFFER_TYPES = ("buffer", "typing_extensions.Buffer", "bytes", "collections.abc.Buffer")


class CheckedTensorRT(types.ModuleType):
    def __init__(self, real, behaviour: dict | None = None):
        super().__init__("tensorrt")
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # importlib.util.find_spec asks for it
        self._real = real
        self._behaviour = dict(behaviour or {})
        self._classes: dict[str, CheckedClass] = {}
        self.calls: list[tuple[str, dict]] = []
        self.__version__ = real.__version__

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if not hasattr(self._real, name):
            raise AttributeError(f"TensorRT {self._real.__version__}: module 'tensorrt' has no attribute {name!r}")
        value = getattr(self._real, name)
        if isinstance(value, type) and not is_enum(value) and not name.startswith("Dims"):
            return self._classes.setdefault(name, CheckedClass(self, value))
        if isinstance(value, types.BuiltinFunctionType):
            return CheckedCall(self, None, name, value)
        return value  # enums, Dims, pure-Python helpers such as nptype, constants

    # --- helpers used by the classes below ---
    def resolve(self, annotation: str):
        """The real class named by an annotation, or None (builtins, typing constructs, C++ names)."""
        for prefix in PREFIXES:
            if annotation.startswith(prefix):
                target = self._real
                for part in annotation[len(prefix):].split("."):
                    target = getattr(target, part, None)
                    if target is None:
                        return None
                return target if isinstance(target, type) else None
        return None

    def behaviour_for(self, real_class, member: str):
        for cls in (real_class.__mro__ if real_class is not None else ()):
            key = f"{cls.__name__}.{member}"
            if key in self._behaviour:
                return self._behaviour[key]
        return self._behaviour.get(f"tensorrt.{member}") if real_class is None else None

    def check_value(self, annotation: str, value, where: str) -> None:
        """TypeError unless ``value`` fits the documented ``annotation``."""
        problem = None
        if annotation in INT_TYPES:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                problem = f"an int (got {type(value).__name__}; implicit int() conversion is not relied on)"
        elif annotation in FLOAT_TYPES:
            if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
                problem = f"a float (got {type(value).__name__})"
        elif annotation == "bool":
            if not isinstance(value, (bool, np.bool_)):
                problem = f"a bool (got {type(value).__name__})"
        elif annotation == "str":
            if not isinstance(value, str):
                problem = f"a str (got {type(value).__name__})"
        elif annotation in BUFFER_TYPES:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                problem = f"a buffer (got {type(value).__name__})"
        elif annotation in ("tuple", "list"):
            if not isinstance(value, (tuple, list)):
                problem = f"a {annotation} (got {type(value).__name__})"
        else:
            cls = self.resolve(annotation)
            if cls is None:
                return
            if cls.__name__.startswith("Dims"):
                fits = isinstance(value, cls) or (
                    isinstance(value, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in value))
            elif is_enum(cls):
                fits = isinstance(value, cls)
            else:  # pybind11 passes None as a null pointer for class arguments
                fits = value is None or isinstance(value, cls) or (isinstance(value, StandIn) and issubclass(value._real, cls))
            if not fits:
                problem = f"a {cls.__name__} (got {describe(value)})"
        if problem is not None:
            raise TypeError(f"TensorRT {self._real.__version__}: {where} expects {problem}")

    def stand_in(self, annotation: str, where: str):
        """A value of the documented return type."""
        if annotation == "None":
            return None
        if annotation == "bool":
            return True
        if annotation in INT_TYPES:
            return 0
        if annotation in FLOAT_TYPES:
            return 0.0
        if annotation == "str":
            return ""
        cls = self.resolve(annotation)
        if cls is None:
            return StandIn(self, None, annotation)
        if is_enum(cls):
            return next(iter(cls.__members__.values()))
        return StandIn(self, cls)

    def check_return(self, annotation: str, value, where: str):
        if value is None and self.resolve(annotation) is not None:
            return value  # pybind11 returns None for a null pointer (a failed build, deserialize)
        self.check_value(annotation, value, f"{where} return value")
        return value


class CheckedCall:
    """A bound method (or module function) checked against the real overloads."""

    def __init__(self, double: CheckedTensorRT, owner, name: str, real_function, real_class=None):
        self._double, self._owner, self._name = double, owner, name
        self._real_class = real_class if real_class is not None else (owner._real if owner is not None else None)
        self._qualified = f"{self._real_class.__name__ if self._real_class else 'tensorrt'}.{name}"
        self._signatures = signatures_of(real_function, name)
        if not self._signatures:
            raise AttributeError(f"TensorRT {double._real.__version__}: {self._qualified} has no documented signature")

    def __call__(self, *args, **kwargs):
        errors = []
        for signature in self._signatures:
            try:
                bound = signature.bind(args, kwargs)
                for parameter in signature.parameters:
                    if parameter.name in bound:
                        self._double.check_value(parameter.annotation, bound[parameter.name],
                                                 f"{self._qualified}({parameter.name}=...)")
            except TypeError as error:
                errors.append(str(error))
                continue
            self._double.calls.append((self._qualified, bound))
            action = self._double.behaviour_for(self._real_class, self._name)
            if action is None:
                return self._double.stand_in(signature.returns, self._qualified)
            return self._double.check_return(signature.returns, action(self._owner, **bound), self._qualified)
        raise TypeError(f"TensorRT {self._double._real.__version__}: {self._qualified} call does not fit: "
                        + " | ".join(errors))


class CheckedClass:
    """A real class: calling it checks ``__init__``'s signature and makes a StandIn; attributes are real."""

    def __init__(self, double: CheckedTensorRT, real: type):
        self._double, self._real = double, real

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if not hasattr(self._real, name):
            raise AttributeError(f"TensorRT {self._double._real.__version__}: {self._real.__name__} has no attribute {name!r}")
        return getattr(self._real, name)

    def __call__(self, *args, **kwargs):
        init = CheckedCall(self._double, None, "__init__", self._real.__init__, real_class=self._real)
        init(*args, **kwargs)
        return StandIn(self._double, self._real)


class StandIn:
    """An instance of a real TensorRT class that was never created by TensorRT: attributes are checked."""

    def __init__(self, double: CheckedTensorRT, real: type | None, annotation: str = ""):
        object.__setattr__(self, "_double", double)
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_annotation", annotation or (real.__name__ if real else "object"))
        object.__setattr__(self, "values", {})

    def __repr__(self) -> str:
        return f"<stand-in {self._annotation}>"

    def __getattr__(self, name: str):
        double, real = self._double, self._real
        if real is None:
            raise AttributeError(f"{self._annotation} stand-in has no attribute {name!r} (type not in the bindings)")
        if not hasattr(real, name):
            raise AttributeError(f"TensorRT {double._real.__version__}: {real.__name__} has no attribute {name!r}")
        member = next((cls.__dict__[name] for cls in real.__mro__ if name in cls.__dict__), None)
        if isinstance(member, property):
            if name in self.values:
                return self.values[name]
            action = double.behaviour_for(real, name)
            annotation = property_type(member)
            where = f"{real.__name__}.{name}"
            if action is None:
                return double.stand_in(annotation, where)
            return double.check_return(annotation, action(self), where)
        value = getattr(real, name)
        if callable(value) and not isinstance(value, type):
            return CheckedCall(double, self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        double, real = self._double, self._real
        member = next((cls.__dict__[name] for cls in real.__mro__ if name in cls.__dict__), None) if real else None
        if not isinstance(member, property):
            raise AttributeError(f"TensorRT {double._real.__version__}: {real.__name__ if real else self._annotation} "
                                 f"has no property {name!r}")
        annotation = property_setter_type(member)
        if annotation is None:
            raise AttributeError(f"TensorRT {double._real.__version__}: {real.__name__}.{name} is read-only")
        double.check_value(annotation, value, f"{real.__name__}.{name} = ...")
        double.calls.append((f"{real.__name__}.{name}=", {"value": value}))
        self.values[name] = value

    def __bytes__(self) -> bytes:
        if "__bytes__" not in self.values:
            raise TypeError(f"bytes() of a {self._annotation} stand-in: no serialized data was supplied")
        return bytes(self.values["__bytes__"])


def is_enum(cls) -> bool:
    return isinstance(cls, type) and hasattr(cls, "__members__")


def describe(value) -> str:
    return repr(value) if isinstance(value, StandIn) else type(value).__name__
