"""Unit tests of `graphport.ir.symbolic`: the polynomial arithmetic that constant folding does over batch dims."""

from __future__ import annotations

import numpy as np
import pytest

from graphport.ir.symbolic import Atom, Relation, Sym, Undecidable, evaluate, is_symbolic, normalize, relation

B = Sym.atom(Atom("batch", source="x", axis=0))
T = Sym.atom(Atom("time", source="x", axis=1))


def test_sums_and_products_collect_terms():
    assert repr(B + B) == "2*batch"
    assert repr(B * T * 3) == "3*batch*time"
    assert B * 2 - B == B
    assert (B + 1) - B == 1 and isinstance((B + 1) - B, int)  # no atom left: a plain int
    assert repr(3 - B) in ("-1*batch + 3", "3 + -1*batch")
    assert T * B == B * T  # monomials are sorted by atom name


def test_floordiv_and_mod_divide_exactly_or_make_a_derived_atom():
    assert (B * 4) // 2 == B * 2
    assert (B * 4) % 2 == 0
    half = (B + 1) // 2
    (mono, coef), = half.terms.items()
    atom = mono[0]
    assert coef == 1 and atom.op == "floordiv" and atom.k == 2 and atom.arg == B + 1
    assert atom.name == "(batch + 1)//2"
    rem = B % 3
    assert rem.terms and next(iter(rem.terms))[0].op == "mod"
    assert (B + 1) // 2 == half  # the same definition gives the same atom
    with pytest.raises(Undecidable):
        B / 2  # true division only when exact
    assert (B * 6) / 3 == B * 2
    with pytest.raises(Undecidable):
        B // T  # division by a symbol


def test_comparisons_decide_only_what_positivity_proves():
    same = B * 1
    assert same == B and B != B + 1 and B != 0
    assert B > 0 and B >= 1 and -B < 0 and B + 1 > 1
    assert (B == 4) is False and B != 4  # == is "provably the same" and never raises: batch may or may not be 4
    with pytest.raises(Undecidable):
        B - 1 > 0  # noqa: B015  batch may be 1
    with pytest.raises(Undecidable):
        int(B)


W = (((Sym.atom(Atom("samples", source="x", axis=1)) - 10) // 5 - 3) // 4 - 3) // 4 - 3  # issue #23's dim


@pytest.mark.parametrize("a, b, expected", [
    (B, B * 1, Relation.EQUAL), (B + T, T + B, Relation.EQUAL), (B, B + 1, Relation.DIFFERENT),
    (B, 0, Relation.DIFFERENT), (B * T, 0, Relation.DIFFERENT), (B, 4, Relation.UNKNOWN), (B, T, Relation.UNKNOWN),
    (W, W, Relation.EQUAL), (W, 1, Relation.UNKNOWN), (W, W + 2, Relation.DIFFERENT), ((B + 1) // 2, B, Relation.UNKNOWN),
    (None, B, Relation.UNKNOWN), ("time", "time", Relation.EQUAL), ("time", 3, Relation.UNKNOWN), (3, 3, Relation.EQUAL),
    (3, 4, Relation.DIFFERENT),
])
def test_relation_is_three_valued_and_never_raises(a, b, expected):
    assert relation(a, b) is expected and relation(b, a) is expected
    assert (a == b) is (expected is Relation.EQUAL)  # and == agrees where it can answer, without raising


def test_evaluate_gives_values_at_concrete_sizes():
    assert evaluate(W, {"samples": 16000}) == ((((16000 - 10) // 5 - 3) // 4 - 3) // 4 - 3)
    assert evaluate(B * T * 3 + 1, {"batch": 2, "time": 5}) == 31
    assert evaluate((B + 1) % 2, {"batch": 4}) == 1 and evaluate("time", {"time": 9}) == 9 and evaluate(7, {}) == 7
    assert evaluate(B + T, {"batch": 2}) is None and evaluate(None, {}) is None


def test_equal_syms_hash_equal_and_work_as_keys():
    a, b = B * 2 + T, T + 2 * B
    assert a is not b and hash(a) == hash(b)
    assert {a: "x"}[b] == "x"
    assert Atom("batch") == Atom("batch", source="y", axis=3)  # atoms are identified by name
    assert hash(Atom("batch")) == hash(Atom("batch", source="y"))


def test_lift_refuses_non_integers():
    with pytest.raises(Undecidable):
        B + 0.5
    with pytest.raises(Undecidable):
        B * True


def test_object_arrays_normalize_once_every_entry_is_a_number():
    arr = np.array([B, 1280], dtype=object)
    assert is_symbolic(arr) and normalize(arr, np.dtype(np.int64)) is arr
    plain = normalize(np.array([(B + 2) - B, 3], dtype=object), np.dtype(np.int64))
    assert plain.dtype == np.int64 and plain.tolist() == [2, 3]
    assert not is_symbolic(np.array([1, 2]))
