"""Griffe extensions for the docs build: reStructuredText markup in docstrings, as Markdown;
functions that a module makes at import time, as functions.

The docstrings use Sphinx roles (``:func:`jaxmaml.tree.flatten```, ``:class:`~x.Y```) and
``::`` before literal blocks. mkdocstrings reads docstrings as Markdown, where a role would
show as ``:func:`` plus the target. Each role becomes an inline code span of its target
(``~`` keeps the last component, as in Sphinx), and a paragraph-ending ``::`` becomes ``:``
(a bare ``::`` line is dropped): the indented block after it is already a Markdown code
block. The source files are not changed; only what the site shows.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with Sphinx roles as code spans and ``::`` as ``:``."""
    text = ROLE.sub(_role, text)
    lines = []
    for line in text.split("\n"):
        if line.strip() == "::":
            continue
        lines.append(line[:-1] if line.rstrip().endswith("::") and not line.rstrip().endswith(":::")
                     else line)
    return "\n".join(line.rstrip() for line in lines)


class RstRoles(griffe.Extension):
    """Rewrites every docstring griffe loads (modules, classes, functions, attributes)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)


class MadeFunctions(griffe.Extension):
    """Module attributes that are functions made at import time, documented as functions.

    ``jaxmaml.learners.maml = _factory("maml", doc)`` is an attribute to a static reader;
    the module is imported and each such attribute is replaced by the inspected function
    (its signature and docstring), so the API page lists every learner factory.
    """

    def __init__(self, modules: list[str]):
        super().__init__()
        self.modules = modules

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any
                   ) -> None:
        for path in self.modules:
            if path.split(".")[0] != pkg.name:
                continue
            static = pkg.get_member(path.split(".", 1)[1])
            runtime = griffe.inspect(path, extensions=griffe.load_extensions(RstRoles),
                                     docstring_parser=loader.docstring_parser,
                                     docstring_options=loader.docstring_options)
            for name, member in list(static.members.items()):
                made = runtime.members.get(name)
                if member.is_alias or made is None or made.is_alias:
                    continue
                if member.is_attribute and made.is_function:
                    static.set_member(name, made)
