"""Program generator for Learning to Execute (Zaremba & Sutskever 2014).

``generate(task, length, nesting, rng)`` returns ``(program, target)``, both
plain strings without spaces.

Grammar of the generated programs
---------------------------------
Every literal has exactly ``length`` digits; its leading digit is non-zero
unless ``length == 1`` (then it is any of 0..9). A program is built by
``nesting`` rounds. Each round picks one operation allowed for the task; its
*first operand* (the one written first) is the expression built so far, wrapped
in parentheses, and every other operand is a fresh literal. In the first round
there is no expression yet, so all operands are fresh literals. The outermost
expression is not parenthesised. The spellings, with ``A`` the first operand::

    add        A+b               e.g. 12+34
    subtract   A-b               e.g. 12-34
    multiply   A*b               e.g. 12*34
    if         AifB<CelseD       e.g. 12if34<56else78   (or ``>``, chosen at random)
    for        x=Afor[i]x+=b     e.g. x=12for[3]x+=45    (i in 1..9, value A + i*b)

So the expression so far becomes the *value branch* of an ``if`` (``A`` in
``A if b<c else d``; the comparison and the else-branch are fresh literals) and
the *initial value* of a ``for`` (``x=A``; the increment ``b`` is a fresh
literal). Example at nesting 3: ``x=((12+34)if56<78else90)for[4]x+=11``.

Tasks and their operations: ``addition`` (add), ``control`` (if, for),
``program`` (add, subtract, multiply, if, for). Their target is the value
modulo ``10**(length+1)`` as a decimal string (non-negative, no padding).
The memorisation tasks ``copy``, ``reverse`` and ``double`` use a single
literal of ``length`` digits as the program (``nesting`` is ignored); the
target is the literal, the literal reversed, or the literal twice
(concatenated), respectively.

Translation to Python
---------------------
``to_python(program)`` parses a program (``parse``) and writes an equivalent
ordinary Python expression, fully parenthesised, with spaces around ``if`` and
``else`` and each for-loop written as a real loop::

    x=A for[i] x+=b   ->   (lambda x: ([x := x + b for _ in range(i)], x)[1])(A)

``eval(to_python(p)) % 10**(length+1)`` equals ``int(target)`` for every
generated program of the first three tasks.
"""

from __future__ import annotations

import random
from typing import Callable, Union

import numpy as np

RNG = Union[random.Random, np.random.Generator]

TASKS: tuple[str, ...] = ("addition", "control", "program", "copy", "reverse", "double")
PROGRAM_TASKS: tuple[str, ...] = ("addition", "control", "program")
MEMORY_TASKS: tuple[str, ...] = ("copy", "reverse", "double")
OPERATIONS: tuple[str, ...] = ("add", "sub", "mul", "if", "for")
TASK_OPERATIONS: dict[str, tuple[str, ...]] = {
    "addition": ("add",),
    "control": ("if", "for"),
    "program": ("add", "sub", "mul", "if", "for"),
}

_BINARY = {"add": "+", "sub": "-", "mul": "*"}
_BINARY_OPS = {v: k for k, v in _BINARY.items()}
_MAX_CHUNK = 18  # digits per draw; keeps numpy draws inside int64


def _int_sampler(rng: RNG) -> Callable[[int, int], int]:
    """Return ``randint(lo, hi)`` (both inclusive) drawing from ``rng``."""
    if isinstance(rng, random.Random):
        randrange = rng.randrange
        return lambda lo, hi: randrange(lo, hi + 1)
    if isinstance(rng, np.random.Generator):
        integers = rng.integers
        return lambda lo, hi: int(integers(lo, hi + 1))
    raise TypeError(f"rng must be random.Random or numpy.random.Generator, got {type(rng).__name__}")


def _literal(randint: Callable[[int, int], int], length: int) -> str:
    """A literal of exactly ``length`` digits (leading digit non-zero unless length 1)."""
    if length == 1:
        return str(randint(0, 9))
    if length <= _MAX_CHUNK:
        return str(randint(10 ** (length - 1), 10**length - 1))
    parts = [str(randint(1, 9))]
    left = length - 1
    while left:
        k = min(left, _MAX_CHUNK)
        parts.append(str(randint(0, 10**k - 1)).zfill(k))
        left -= k
    return "".join(parts)


def _check_args(task: str, length: int, nesting: int) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length must be an integer >= 1, got {length!r}")
    if isinstance(nesting, bool) or not isinstance(nesting, (int, np.integer)) or nesting < 1:
        raise ValueError(f"nesting must be an integer >= 1, got {nesting!r}")


def generate(task: str, length: int, nesting: int, rng: RNG) -> tuple[str, str]:
    """Generate one ``(program, target)`` pair; see the module docstring."""
    _check_args(task, length, nesting)
    length, nesting = int(length), int(nesting)
    randint = _int_sampler(rng)

    if task in MEMORY_TASKS:
        lit = _literal(randint, length)
        if task == "copy":
            return lit, lit
        if task == "reverse":
            return lit, lit[::-1]
        return lit, lit + lit

    ops = TASK_OPERATIONS[task]
    last = len(ops) - 1
    code = ""
    value = 0
    for round_ in range(nesting):
        op = ops[randint(0, last)] if last else ops[0]
        if round_ == 0:
            a_code = _literal(randint, length)
            a_val = int(a_code)
        else:
            a_code = "(" + code + ")"
            a_val = value
        if op in _BINARY:
            b = _literal(randint, length)
            code = a_code + _BINARY[op] + b
            if op == "add":
                value = a_val + int(b)
            elif op == "sub":
                value = a_val - int(b)
            else:
                value = a_val * int(b)
        elif op == "if":
            less = randint(0, 1) == 1
            b = _literal(randint, length)
            c = _literal(randint, length)
            d = _literal(randint, length)
            if less:
                code = a_code + "if" + b + "<" + c + "else" + d
                value = a_val if int(b) < int(c) else int(d)
            else:
                code = a_code + "if" + b + ">" + c + "else" + d
                value = a_val if int(b) > int(c) else int(d)
        else:  # for
            i = randint(1, 9)
            b = _literal(randint, length)
            code = "x=" + a_code + "for[" + str(i) + "]x+=" + b
            value = a_val + i * int(b)
    return code, str(value % 10 ** (length + 1))


# --------------------------------------------------------------------------
# Parsing and translation (used by tests and for inspection; not on the hot path)

# Tree nodes (nested tuples):
#   ("lit", "123")
#   ("add" | "sub" | "mul", A, B)
#   ("if", A, "<" | ">", B, C, D)
#   ("for", A, i, B)          # i: int in 1..9


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def error(self, what: str) -> ValueError:
        return ValueError(f"cannot parse program {self.s!r} at position {self.i}: {what}")

    def peek(self, tok: str) -> bool:
        return self.s.startswith(tok, self.i)

    def expect(self, tok: str) -> None:
        if not self.peek(tok):
            raise self.error(f"expected {tok!r}")
        self.i += len(tok)

    def digits(self) -> str:
        j = self.i
        while j < len(self.s) and self.s[j].isdigit():
            j += 1
        if j == self.i:
            raise self.error("expected a digit")
        out = self.s[self.i : j]
        self.i = j
        return out

    def atom(self) -> tuple:
        if self.peek("("):
            self.i += 1
            node = self.node()
            self.expect(")")
            return node
        return ("lit", self.digits())

    def node(self) -> tuple:
        if self.peek("x="):
            self.i += 2
            a = self.atom()
            self.expect("for[")
            i = int(self.digits())
            self.expect("]x+=")
            b = self.atom()
            return ("for", a, i, b)
        a = self.atom()
        if self.i < len(self.s) and self.s[self.i] in _BINARY_OPS:
            op = _BINARY_OPS[self.s[self.i]]
            self.i += 1
            return (op, a, self.atom())
        if self.peek("if"):
            self.i += 2
            b = self.atom()
            if not (self.peek("<") or self.peek(">")):
                raise self.error("expected '<' or '>'")
            cmp = self.s[self.i]
            self.i += 1
            c = self.atom()
            self.expect("else")
            d = self.atom()
            return ("if", a, cmp, b, c, d)
        return a


def parse(program: str) -> tuple:
    """Parse a program into a tree of nested tuples (see the node list above)."""
    p = _Parser(program)
    node = p.node()
    if p.i != len(program):
        raise p.error("trailing characters")
    return node


def _emit(node: tuple) -> str:
    kind = node[0]
    if kind == "lit":
        return str(int(node[1]))
    if kind in _BINARY:
        return f"({_emit(node[1])} {_BINARY[kind]} {_emit(node[2])})"
    if kind == "if":
        _, a, cmp, b, c, d = node
        return f"({_emit(a)} if {_emit(b)} {cmp} {_emit(c)} else {_emit(d)})"
    _, a, i, b = node
    return f"(lambda x: ([x := x + {_emit(b)} for _ in range({i})], x)[1])({_emit(a)})"


def to_python(program: str) -> str:
    """Translate a generated program into an ordinary Python expression.

    ``if``/``else`` get spaces around them and every for-loop becomes an
    immediately-called lambda running a real loop; the result evaluates with
    ``eval`` to the program's (un-reduced) value.
    """
    return _emit(parse(program))
