"""Integer expressions over dynamic dimensions (the batch, a time axis...).

ONNX exporters compute shapes at run time (`Shape -> Gather -> Concat -> Reshape`). Folding that arithmetic needs
values such as `[batch, 1280]`: numpy object arrays whose entries are ints or `Sym`. A `Sym` is a polynomial with
integer coefficients over atoms; an atom is an input dimension or an opaque derived term such as `batch // 2`.
Ordering a `Sym` (`<`, `int()`) that is not decidable at conversion time raises `Undecidable`, and the caller
leaves that node to run in TF. Equality never raises: `==` is structural (the same polynomial), which is what a
pass matching a pattern needs (it rewrites only what it can prove), and `relation` answers equal, different or
unknown for a caller that must tell "different" from "not known to be equal". `evaluate` gives an expression's
value at concrete sizes of the input dims (what verification sizing reads).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class Undecidable(Exception):
    """A comparison or operation on symbols whose result depends on the runtime value."""


@dataclass(frozen=True, eq=False)
class Atom:
    """A runtime integer: dimension `axis` of graph input `source`, or `op(arg, k)` of another symbol.

    Atoms are identified by name: the name spells out the whole definition.
    """

    name: str
    source: str | None = None
    axis: int | None = None
    op: str | None = None
    arg: Sym | None = None
    k: int | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Atom) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


Monomial = tuple[Atom, ...]


class Sym:
    """A polynomial over atoms with integer coefficients; atoms are positive integers at run time."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict[Monomial, int]):
        self.terms = {m: c for m, c in terms.items() if c != 0}

    @staticmethod
    def atom(atom: Atom) -> Sym:
        return Sym({(atom,): 1})

    @staticmethod
    def lift(x: SymLike) -> Sym:
        if isinstance(x, Sym):
            return x
        if isinstance(x, (bool, np.bool_)) or not float(x).is_integer():
            raise Undecidable(f"non-integer {x!r} in symbolic arithmetic")
        return Sym({(): int(x)})

    def simplify(self) -> SymLike:
        """Return a plain int when no atom is left."""
        if not self.terms:
            return 0
        if list(self.terms) == [()]:
            return self.terms[()]
        return self

    def __add__(self, other: SymLike) -> SymLike:
        o = Sym.lift(other)
        terms = dict(self.terms)
        for m, c in o.terms.items():
            terms[m] = terms.get(m, 0) + c
        return Sym(terms).simplify()

    __radd__ = __add__

    def __neg__(self) -> Sym:
        return Sym({m: -c for m, c in self.terms.items()})

    def __sub__(self, other: SymLike) -> SymLike:
        return self + (-Sym.lift(other))

    def __rsub__(self, other: SymLike) -> SymLike:
        return Sym.lift(other) + (-self)

    def __mul__(self, other: SymLike) -> SymLike:
        o = Sym.lift(other)
        terms: dict[Monomial, int] = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in o.terms.items():
                m = tuple(sorted(m1 + m2, key=lambda a: a.name))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Sym(terms).simplify()

    __rmul__ = __mul__

    def _derived(self, op: str, k: int) -> Sym:
        return Sym.atom(Atom(f"({self}){'//' if op == 'floordiv' else '%'}{k}", op=op, arg=self, k=k))

    def __floordiv__(self, other: SymLike) -> SymLike:
        k = _as_positive_int(other)
        if all(c % k == 0 for c in self.terms.values()):
            return Sym({m: c // k for m, c in self.terms.items()}).simplify()
        return self._derived("floordiv", k)

    def __truediv__(self, other: SymLike) -> SymLike:
        k = _as_positive_int(other)
        if all(c % k == 0 for c in self.terms.values()):
            return Sym({m: c // k for m, c in self.terms.items()}).simplify()
        raise Undecidable(f"{self} / {k} may not be an integer")

    def __mod__(self, other: SymLike) -> SymLike:
        k = _as_positive_int(other)
        if all(c % k == 0 for c in self.terms.values()):
            return 0
        return self._derived("mod", k)

    def _sign_known(self) -> int:
        """+1 if surely >= 1, -1 if surely <= -1 (atoms are >= 1), else raise."""
        const = self.terms.get((), 0)
        others = [c for m, c in self.terms.items() if m]
        if all(c > 0 for c in others) and const + sum(others) >= 1:
            return 1
        if all(c < 0 for c in others) and const + sum(others) <= -1:
            return -1
        raise Undecidable(f"sign of {self}")

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        """The same polynomial: True only when provably equal, never raising (see `relation` for "different")."""
        if not isinstance(other, (Sym, int, np.integer, float, np.floating)):
            return NotImplemented
        try:
            return not isinstance(diff := self - other, Sym) and diff == 0
        except Undecidable:  # a non-integer float is no dim
            return False

    def __ne__(self, other: object) -> bool:  # type: ignore[override]
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __lt__(self, other: SymLike) -> bool:
        d = self - other
        return d < 0 if not isinstance(d, Sym) else d._sign_known() < 0

    def __le__(self, other: SymLike) -> bool:
        return self < other + 1

    def __gt__(self, other: SymLike) -> bool:
        return Sym.lift(other) < self if isinstance(other, Sym) else (-self) < -other

    def __ge__(self, other: SymLike) -> bool:
        return self > other - 1

    def __hash__(self) -> int:
        return hash(tuple(sorted((tuple(a.name for a in m), c) for m, c in self.terms.items())))

    def __bool__(self) -> bool:
        return True  # atoms are >= 1 and a zero polynomial simplifies to int 0

    def __int__(self) -> int:
        raise Undecidable(f"{self} has no value before run time")

    __index__ = __int__

    def __repr__(self) -> str:
        parts = []
        for m, c in sorted(self.terms.items(), key=lambda t: len(t[0]), reverse=True):
            body = "*".join(a.name for a in m)
            parts.append(str(c) if not m else body if c == 1 else f"{c}*{body}")
        return " + ".join(parts)


SymLike = int | Sym


class Relation(enum.Enum):
    """How two dims compare at conversion time."""

    EQUAL = "equal"
    DIFFERENT = "different"
    UNKNOWN = "unknown"


def relation(a: object, b: object) -> Relation:
    """Equal, different, or unknown until run time, for dims that are ints, `Sym`s or None (unknown); never raises.
    Names of input dims (str) compare by name: the same name is the same dim, two names may be equal at run time."""
    if a is None or b is None:
        return Relation.UNKNOWN
    if isinstance(a, str) or isinstance(b, str):
        return Relation.EQUAL if a == b else Relation.UNKNOWN
    try:
        diff = Sym.lift(a) - b
        if not isinstance(diff, Sym):
            return Relation.EQUAL if diff == 0 else Relation.DIFFERENT
        diff._sign_known()
        return Relation.DIFFERENT
    except (Undecidable, TypeError, ValueError):
        return Relation.UNKNOWN


def evaluate(x: object, sizes: dict[str, int]) -> int | None:
    """The value of dim `x` (an int, an input dim's name, a `Sym`) when the input dims have `sizes`; None when it
    reads a dim `sizes` lacks or is unknown. Floor division and remainder are Python's, as ONNX's integer shape
    arithmetic on the non-negative values that sizes are."""
    if x is None:
        return None
    if isinstance(x, str):
        return sizes.get(x)
    if not isinstance(x, Sym):
        return int(x)
    total = 0
    for mono, coef in x.terms.items():
        term = coef
        for atom in mono:
            value = _atom_value(atom, sizes)
            if value is None:
                return None
            term *= value
        total += term
    return total


def _atom_value(atom: Atom, sizes: dict[str, int]) -> int | None:
    if atom.op is None:
        return sizes.get(atom.name)
    arg = evaluate(atom.arg, sizes)
    if arg is None:
        return None
    return arg // atom.k if atom.op == "floordiv" else arg % atom.k


def _as_positive_int(x: object) -> int:
    if isinstance(x, Sym) or int(x) != x or int(x) <= 0:
        raise Undecidable(f"division by {x!r}")
    return int(x)


def is_symbolic(arr: np.ndarray) -> bool:
    """True for an object array holding at least one `Sym`."""
    return arr.dtype == object and any(isinstance(v, Sym) for v in arr.flat)


def normalize(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Turn an object array back into a plain `dtype` array once every entry is a number."""
    if arr.dtype == object and not is_symbolic(arr):
        return np.asarray(arr.tolist(), dtype=dtype).reshape(arr.shape)
    return arr
