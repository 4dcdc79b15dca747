from __future__ import annotations

import difflib
import textwrap

import pytest

from feedbot.releases.event import Change
from feedbot.releases.pysource import Hunk, code_lines, describe, function_spans

MODULE = textwrap.dedent(
    '''\
    """The module's docstring,
    on two lines."""

    import os  # a trailing comment keeps the line code

    # a comment alone

    class Vault:
        """A class docstring."""

        def open(self):
            "A one-line docstring."
            return os.sep

        def note(self):
            x = """not a docstring:
            an assigned string"""
            return x
    '''
)


def test_code_lines_leave_out_docstrings_comments_and_blank_lines() -> None:
    assert code_lines(MODULE) == frozenset({4, 8, 11, 13, 15, 16, 17, 18})


def test_code_lines_from_bytes_honour_a_coding_line_and_none_when_unparseable() -> None:
    source = '# -*- coding: latin-1 -*-\n"""D\xe9j\xe0."""\nx = "\xe9"\n'.encode("latin-1")
    assert code_lines(source) == frozenset({3})
    assert code_lines("def broken(:\n") is None


def hunks(old: str, new: str) -> list[Hunk]:
    """The ``-U0`` hunks git would print, from difflib's opcodes."""
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    found = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            found.append(Hunk(i1 + (i2 > i1), i2 - i1, j1 + (j2 > j1), j2 - j1))
    return found


def change(old: str, new: str, path: str = "vault/appraisal.py") -> Change | None:
    old, new = textwrap.dedent(old), textwrap.dedent(new)
    return describe(old_path=path, new_path=path, old=old, new=new, hunks=hunks(old, new))


BEFORE = '''\
    from opentelemetry import trace

    tracer = trace.get_tracer(__name__)


    def appraise(items):
        """Value the items."""
        with tracer.start_as_current_span("appraise"):
            return sum(_weigh(i) for i in items)


    def _weigh(item):
        # Weighed on the goblin scales.
        return item * 2
    '''


@pytest.mark.parametrize(
    "after",
    [
        BEFORE.replace("Value the items.", "Value the items at today's rates."),
        BEFORE.replace('"""Value the items."""', '"""Value the items.\n\n    More.\n    """'),
        BEFORE.replace("# Weighed on the goblin scales.", "# Weighed twice."),
        BEFORE.replace("        # Weighed on the goblin scales.\n", ""),
        BEFORE.replace("def _weigh(item):\n", "def _weigh(item):\n\n        # noted\n"),
        BEFORE.replace('        """Value the items."""\n', ""),
    ],
    ids=["docstring", "docstring-grows", "comment", "comment-deleted", "blank", "docstring-gone"],
)
def test_a_file_whose_hunks_only_touch_docstrings_or_comments_is_no_change(after: str) -> None:
    assert change(BEFORE, after) is None


def test_code_replaced_by_a_comment_or_deleted_is_a_change_of_its_function() -> None:
    # The new side is only a comment, the old side was code: the deletion is what matters.
    old = "def f(x):\n    x += 1\n    return x\n"
    commented = "def f(x):\n    # x += 1\n    return x\n"
    assert change(old, commented) == Change("vault/appraisal.py", ("vault.appraisal.f",), ((2, 2),))
    deleted = "def f(x):\n    return x\n"
    assert change(old, deleted) == Change("vault/appraisal.py", ("vault.appraisal.f",), ((1, 1),))
    untraced = BEFORE.replace('with tracer.start_as_current_span("appraise"):', "if items:")
    found = change(BEFORE, untraced)
    assert found is not None and found.functions == ("vault.appraisal.appraise",)
    assert found.traced == ()  # it no longer opens a span


def test_docstring_hunks_name_no_function_beside_code_hunks() -> None:
    after = BEFORE.replace("Value the items.", "Value them.").replace("* 2", "* 3")
    assert change(BEFORE, after) == Change(
        "vault/appraisal.py", ("vault.appraisal._weigh",), ((14, 14),)
    )


def test_changed_functions_that_open_a_span_are_traced() -> None:
    after = BEFORE.replace("sum(", "max(").replace("* 2", "* 3")
    assert change(BEFORE, after) == Change(
        "vault/appraisal.py",
        ("vault.appraisal.appraise", "vault.appraisal._weigh"),
        ((9, 9), (14, 14)),
        traced=("vault.appraisal.appraise",),
    )


TRACED = """\
    from opentelemetry import trace
    from opentelemetry.trace import start_span

    tracer = trace.get_tracer(__name__)


    @tracer.start_as_current_span("vault.deposit")
    def deposit(item):
        return item


    def seal(item):
        span = trace.get_tracer("x").start_span("seal")
        span.end()


    def bare(item):
        with start_span("bare"):
            pass


    def outer(item):
        def inner():
            with tracer.start_as_current_span("inner"):
                return item

        return inner()


    class Clerk:
        async def count(self):
            with tracer.start_as_current_span("count") as span:
                return span


    def plain(item):
        tracer.get_current_span()
        return start_as_current_span


    def decorated_elsewhere(item):
        return item
    """


def test_a_span_opened_in_the_body_or_a_decorator_marks_a_function_traced() -> None:
    spans = function_spans(textwrap.dedent(TRACED))
    assert spans is not None
    assert {s.name: s.traced for s in spans} == {
        "deposit": True,
        "seal": True,
        "bare": True,
        "outer": False,  # only the function nested in it opens one
        "outer.inner": True,
        "Clerk.count": True,
        "plain": False,  # no call of a span opener
        "decorated_elsewhere": False,
    }


def test_added_and_deleted_files() -> None:
    new = textwrap.dedent(BEFORE)
    added = describe(old_path=None, new_path="v/a.py", old=None, new=new, hunks=[Hunk(0, 0, 1, 14)])
    assert added == Change(
        "v/a.py", ("v.a.appraise", "v.a._weigh"), ((1, 14),), traced=("v.a.appraise",)
    )
    docs_only = describe(
        old_path=None, new_path="v/b.py", old=None, new='"""Docs."""\n', hunks=[Hunk(0, 0, 1, 1)]
    )
    assert docs_only is None
    gone = describe(old_path="v/a.py", new_path=None, old=new, new=None, hunks=[Hunk(1, 14, 0, 0)])
    assert gone == Change("v/a.py", ("v.a.appraise", "v.a._weigh"), ())


def test_an_unparseable_side_counts_every_line_as_code() -> None:
    found = describe(
        old_path="v/a.py",
        new_path="v/a.py",
        old="# fine\n",
        new="def broken(:\n",
        hunks=[Hunk(1, 1, 1, 1)],
    )
    assert found == Change("v/a.py", (), ((1, 1),))
