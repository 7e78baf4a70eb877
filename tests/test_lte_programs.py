"""Tests for the Learning to Execute program generator."""

import random
import re

import numpy as np
import pytest

from relational_rnn.tasks.lte.programs import (
    MEMORY_TASKS,
    PROGRAM_TASKS,
    TASK_OPERATIONS,
    TASKS,
    generate,
    parse,
    to_python,
)


def _walk(node):
    """Yield (operation names, literal strings, for-counts, comparators) of a parse tree."""
    kind = node[0]
    if kind == "lit":
        yield "lit", node[1]
        return
    yield "op", kind
    if kind == "for":
        yield "iter", node[2]
        children = (node[1], node[3])
    elif kind == "if":
        yield "cmp", node[2]
        children = (node[1], node[3], node[4], node[5])
    else:
        children = node[1:]
    for child in children:
        yield from _walk(child)


def _depth(node):
    """Operations along the chain of first operands (= nesting rounds)."""
    return 0 if node[0] == "lit" else 1 + _depth(node[1])


SETTINGS = [(1, 1), (1, 3), (2, 2), (3, 1), (4, 3), (5, 2), (7, 4), (25, 2)]


@pytest.mark.parametrize("task", PROGRAM_TASKS)
@pytest.mark.parametrize("length,nesting", SETTINGS)
def test_target_matches_python_evaluation(task, length, nesting):
    rng = random.Random(f"{task}-{length}-{nesting}")
    allowed = set(TASK_OPERATIONS[task])
    for _ in range(300):
        program, target = generate(task, length, nesting, rng)
        assert " " not in program and " " not in target
        assert target.isdigit()
        assert int(target) == eval(to_python(program)) % 10 ** (length + 1)
        tree = parse(program)
        assert _depth(tree) == nesting
        items = list(_walk(tree))
        ops = [v for k, v in items if k == "op"]
        assert len(ops) == nesting and set(ops) <= allowed
        for kind, v in items:
            if kind == "lit":
                assert len(v) == length
                if length > 1:
                    assert v[0] != "0"
            elif kind == "iter":
                assert 1 <= v <= 9
            elif kind == "cmp":
                assert v in "<>"
        assert not (program.startswith("(") and program.endswith(")") and _balanced(program[1:-1]))


def _balanced(s):
    d = 0
    for c in s:
        d += (c == "(") - (c == ")")
        if d < 0:
            return False
    return d == 0


def test_every_operation_and_comparator_appears():
    rng = random.Random(0)
    for task in PROGRAM_TASKS:
        ops, cmps = set(), set()
        for _ in range(400):
            items = list(_walk(parse(generate(task, 2, 2, rng)[0])))
            ops |= {v for k, v in items if k == "op"}
            cmps |= {v for k, v in items if k == "cmp"}
        assert ops == set(TASK_OPERATIONS[task])
        if "if" in ops:
            assert cmps == {"<", ">"}


def test_spellings_and_translation():
    cases = {
        "12+34": "(12 + 34)",
        "12-34": "(12 - 34)",
        "12*34": "(12 * 34)",
        "12if34<56else78": "(12 if 34 < 56 else 78)",
        "x=12for[3]x+=45": "(lambda x: ([x := x + 45 for _ in range(3)], x)[1])(12)",
        "x=((12+34)if56>78else90)for[4]x+=11": None,
    }
    for program, python in cases.items():
        if python is not None:
            assert to_python(program) == python
    assert eval(to_python("x=12for[3]x+=45")) == 12 + 3 * 45
    assert eval(to_python("x=((12+34)if56>78else90)for[4]x+=11")) == 90 + 4 * 11
    assert eval(to_python("x=(x=1for[2]x+=3)for[4]x+=5")) == (1 + 2 * 3) + 4 * 5
    for bad in ("12+", "12 + 34", "(12+34", "12+34)", "x=12for[]x+=4", "12if3<4"):
        with pytest.raises(ValueError):
            parse(bad)


def test_program_shape_at_nesting_two():
    rng = random.Random(1)
    for _ in range(200):
        program, _ = generate("addition", 3, 2, rng)
        assert re.fullmatch(r"\(\d{3}\+\d{3}\)\+\d{3}", program)


@pytest.mark.parametrize("length", [1, 2, 5, 9, 30])
def test_memorisation_tasks(length):
    rng = random.Random(length)
    for _ in range(200):
        for task in MEMORY_TASKS:
            program, target = generate(task, length, 3, rng)
            assert len(program) == length and program.isdigit()
            if length > 1:
                assert program[0] != "0"
            expected = {"copy": program, "reverse": program[::-1], "double": program + program}[task]
            assert target == expected


def test_length_one_uses_all_digits():
    rng = random.Random(2)
    seen = {generate("copy", 1, 1, rng)[0] for _ in range(500)}
    assert seen == set("0123456789")


def test_reproducible_with_seed_and_both_rng_kinds():
    for task in TASKS:
        a = [generate(task, 4, 3, random.Random(7)) for _ in range(3)]
        b = [generate(task, 4, 3, random.Random(7)) for _ in range(3)]
        assert a == b
        r1, r2 = random.Random(9), random.Random(9)
        assert [generate(task, 4, 3, r1) for _ in range(20)] == [generate(task, 4, 3, r2) for _ in range(20)]
        g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
        s1 = [generate(task, 4, 3, g1) for _ in range(20)]
        assert s1 == [generate(task, 4, 3, g2) for _ in range(20)]
        assert len(set(s1)) > 1


def test_numpy_generator_programs_are_correct():
    g = np.random.default_rng(0)
    for task in PROGRAM_TASKS:
        for length in (1, 5, 20):
            for _ in range(100):
                program, target = generate(task, length, 2, g)
                assert int(target) == eval(to_python(program)) % 10 ** (length + 1)
                lits = [v for k, v in _walk(parse(program)) if k == "lit"]
                assert all(len(v) == length for v in lits)


def test_bad_arguments():
    rng = random.Random(0)
    with pytest.raises(ValueError, match="unknown task"):
        generate("sorting", 2, 1, rng)
    with pytest.raises(ValueError):
        generate("addition", 0, 1, rng)
    with pytest.raises(ValueError):
        generate("addition", 2, 0, rng)
    with pytest.raises(TypeError):
        generate("addition", 2, 1, 42)
