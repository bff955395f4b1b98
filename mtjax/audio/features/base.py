"""The extraction base: field checks, the call, a `key` over every field, configs.

An extraction is a frozen dataclass value; `ext(signal, sample_rate) -> float32 [T, F]`.
Subclass `Extraction` for one of your own (see docs/cookbook.md).
"""

from __future__ import annotations

import ast
import dataclasses
import numbers
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mtjax.audio import loading

# ---------------------------------------------------------------------------------------------
# Field checks: each returns the value in its canonical type (so `key` is canonical too).


def integer(cls_name: str, field: str, value: Any, *, minimum: int = 1) -> int:
    """`value` as an int >= `minimum`, else ValueError naming the class and field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{cls_name}: {field} must be an integer >= {minimum}, got {value!r}")
    if not float(value).is_integer() or value < minimum:
        raise ValueError(f"{cls_name}: {field} must be an integer >= {minimum}, got {value!r}")
    return int(value) if isinstance(value, numbers.Integral) else int(float(value))


def real(
    cls_name: str, field: str, value: Any, *, minimum: float = 0.0, strict: bool = True
) -> float:
    """`value` as a finite float above `minimum` (or at it, when not `strict`)."""
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if bad or not np.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{cls_name}: {field} must be a finite number {bound}, got {value!r}")
    return float(value)


def boolean(cls_name: str, field: str, value: Any) -> bool:
    """`value` as a bool (numpy bools too), else ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{cls_name}: {field} must be True or False, got {value!r}")
    return bool(value)


def optional(check, cls_name: str, field: str, value: Any, **kwargs) -> Any:
    """None as is, anything else through `check`."""
    return None if value is None else check(cls_name, field, value, **kwargs)


def set_field(ext: Any, field: str, value: Any) -> None:
    """Sets a field of a frozen dataclass, for canonicalising values in `__post_init__`."""
    object.__setattr__(ext, field, value)


def config_from_key(key: str) -> dict[str, Any]:
    """`{"name": class name, field: value, ...}` read back from an extraction's `key`.

    The inverse of `key` for fields whose values are Python literals (every built-in
    extraction's are); `mtjax.audio.features.from_config` builds the extraction again. The
    text is parsed, never evaluated: only literals are read and nothing is imported.

    Raises:
      ValueError: `key` is not of the form `Name(field=literal, ...)`.
    """
    try:
        call = ast.parse(key.strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.args):
            raise ValueError("not Name(field=value, ...)")
        fields = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
        if len(fields) != len(call.keywords):
            raise ValueError("a ** argument")
    except (SyntaxError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"extraction key {key!r} is not Name(field=literal, ...): {err}") from None
    return {"name": call.func.id, **fields}


# ---------------------------------------------------------------------------------------------
# Common behaviour: call, key, config.


class Extraction:
    """Behaviour every extraction shares: the call, `key`, `to_config`, `min_seconds`.

    Subclass it with a frozen dataclass that has a `sample_rate` field, a `min_samples`
    property and a `_compute(signal [S]) -> [T, F]` method; `key` then covers every field.
    """

    if TYPE_CHECKING:  # what every subclass provides
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
        sample_rate: int

        @property
        def min_samples(self) -> int:
            """Shortest signal, in samples at `sample_rate`, that gives features."""
            ...

    @property
    def key(self) -> str:
        """`Name(field=repr,...)` over every field in declaration order; stable across runs."""
        fields = ",".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"

    def to_config(self) -> dict[str, Any]:
        """`{"name": class name, field: value, ...}`; `from_config` turns it back.

        The values are JSON values but for tuples (lists after a JSON round trip, which
        `from_config` accepts): `from_config(json.loads(json.dumps(ext.to_config())))`
        equals `ext`. `config_from_key(ext.key)` gives the same dict.
        """
        config = {"name": type(self).__name__}
        config.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        return config

    @property
    def min_seconds(self) -> float:
        """`min_samples` in seconds at `sample_rate`."""
        return self.min_samples / self.sample_rate

    def __call__(self, signal: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features of one mono signal.

        Args:
          signal: float `[S]`, mono, finite.
          sample_rate: the signal's rate in Hz; resampled to `self.sample_rate` if different.

        Returns:
          float32 `[T, F]` (LogbankSummary: `[len(stats), n_filters]`).

        Raises:
          ValueError: the signal is not 1-D, holds NaN/inf, or is shorter than `min_samples`
            (counted at `self.sample_rate`).
        """
        name = type(self).__name__
        signal = np.asarray(signal, dtype=np.float32)
        if signal.ndim != 1:
            raise ValueError(
                f"{name}: expected a mono signal [S], got shape {signal.shape}"
                " (downmix with mtjax.audio.to_mono)"
            )
        if not np.isfinite(signal).all():
            raise ValueError(f"{name}: the signal holds NaN or inf")
        signal = loading.resample(signal, sample_rate, self.sample_rate)
        if signal.shape[0] < self.min_samples:
            raise ValueError(
                f"{name}: signal too short: {signal.shape[0]} samples at {self.sample_rate} Hz,"
                f" needs at least {self.min_samples}"
            )
        return np.ascontiguousarray(self._compute(signal), dtype=np.float32)

    def _compute(self, signal: np.ndarray) -> np.ndarray:
        """float32 [T, F] features of a mono signal at `self.sample_rate`; each class has one."""
        raise TypeError(f"{type(self).__name__} defines no feature computation (_compute)")
