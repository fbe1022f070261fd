"""Griffe extension used by the documentation build (``mkdocs.yml`` loads it; it is not part of the package).

It adapts what Griffe reads from the source to the way the package is written, so that the docstrings
stay as they are:

1. A package that re-exports a function under the name of the submodule it lives in
   (``kan/__init__.py`` does ``from .fit import fit``; the same for ``kan.plot`` and ``kan.prune``) binds the *function* to ``kan.fit`` at run time, but Griffe keeps the
   submodule under that name (griffe issue #124), so ``::: kan`` would leave ``fit`` out. Here the
   member becomes an alias of the function, as Python has it. Aliases that go through the submodule
   (``kan.check_data`` -> ``kan.fit.check_data``) are resolved first, while the submodule is still
   reachable.
2. Sphinx roles (``:class:`KANLayer```, ``:func:`fit```, ...) become inline code.
3. reStructuredText "simple tables" (columns under runs of ``=``, as in ``kan.calibrate``'s module
   docstring) become Markdown tables.
4. A class or function docstring that refers to "the module docstring" (``AFKANLayer``,
   ``SelectableKANLayer``, ``symbolic.fit_curves``) gets that docstring appended: the API pages document the public names, not the modules they
   live in, so the text would otherwise not be on the page.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const):`~?([^`]+)`")
_BORDER = re.compile(r"^\s*=+(?:\s+=+)+\s*$")


def _cells(line: str, starts: list[int]) -> list[str]:
    bounds = starts[1:] + [max(len(line), starts[-1]) + 1]
    return [line[lo:hi].strip().replace("|", "\\|") for lo, hi in zip(starts, bounds)]


def rst_simple_tables(text: str) -> str:
    """Rewrite reST simple tables (border, header, border, rows, border) as Markdown tables;
    anything that does not have that shape is left alone."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        borders = [i] if _BORDER.match(lines[i]) else []
        j = i + 1
        while borders and j < len(lines) and lines[j].strip() and len(borders) < 3:
            if _BORDER.match(lines[j]):
                borders.append(j)
            j += 1
        if len(borders) == 3 and borders[1] == i + 2:
            border = lines[i]
            indent = border[: len(border) - len(border.lstrip())]
            starts = [m.start() for m in re.finditer(r"=+", border)]
            header = _cells(lines[i + 1], starts)
            rows = [_cells(line, starts) for line in lines[borders[1] + 1 : borders[2]]]
            out.append("")
            out.append(indent + "| " + " | ".join(header) + " |")
            out.append(indent + "|" + " --- |" * len(header))
            out.extend(indent + "| " + " | ".join(row) + " |" for row in rows)
            out.append("")
            i = borders[2] + 1
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


def _modules(module: griffe.Module) -> Iterator[griffe.Module]:
    yield module
    for member in list(module.members.values()):
        if not member.is_alias and member.is_module:
            yield from _modules(member)


def _aliases(obj: Any) -> Iterator[griffe.Alias]:
    for member in list(obj.members.values()):
        if member.is_alias:
            yield member
        elif member.is_module or member.is_class:
            yield from _aliases(member)


class PackageDocs(griffe.Extension):
    """Shadowed submodules become aliases of their same-named function; Sphinx roles become code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = _ROLE.sub(r"`\1`", obj.docstring.value) if ":" in obj.docstring.value else obj.docstring.value
            obj.docstring.value = rst_simple_tables(value) if "==" in value else value

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        shadowed = []
        for module in _modules(pkg):
            for member in list(module.members.values()):
                if (not member.is_alias and (member.is_class or member.is_function)
                        and member.docstring is not None and module.docstring is not None
                        and "module docstring" in member.docstring.value):
                    member.docstring.value += "\n\n" + module.docstring.value
            for name, target in module.imports.items():
                member = module.members.get(name)
                if (member is not None and not member.is_alias and member.is_module
                        and target == f"{member.path}.{name}" and name in member.members):
                    shadowed.append((module, name, member.members[name]))
        if not shadowed:
            return
        for alias in _aliases(pkg):  # resolve now: the paths they name stop existing below
            try:
                alias.resolve_target()
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                pass  # external targets (jax, numpy, ...) stay unresolved, as without this extension
        for module, name, function in shadowed:
            module.del_member(name)
            module.set_member(name, griffe.Alias(name, function, parent=module))
