"""Griffe extension used by the documentation build (``mkdocs.yml`` loads it; it is not part of the package).

It adapts what Griffe reads from the source to the way the package is written, so that the docstrings
stay as they are:

1. A package that re-exports a function under the name of the submodule it lives in
   (``kan/__init__.py`` does ``from .fit import fit``; the same for ``kan.plot``, ``kan.prune`` and
   ``bases.rational_init``) binds the *function* to ``kan.fit`` at run time, but Griffe keeps the
   submodule under that name (griffe issue #124), so ``::: kan`` would leave ``fit`` out. Here the
   member becomes an alias of the function, as Python has it. Aliases that go through the submodule
   (``kan.check_data`` -> ``kan.fit.check_data``) are resolved first, while the submodule is still
   reachable.
2. Sphinx roles (``:class:`KANLayer```, ``:func:`fit```, ...) become inline code.
3. A class or function docstring that refers to "the module docstring" (``AFKANLayer``,
   ``SelectableKANLayer``, ``symbolic.fit_curves``) gets that docstring appended: the API pages document the public names, not the modules they
   live in, so the text would otherwise not be on the page.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const):`~?([^`]+)`")


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
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)

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
