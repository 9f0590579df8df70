"""A test-only app: antipatterns.app with AccessMiddleware.__call__ recompiled from its own source, every
local variable renamed, so tests/test_observability.py can show that the stall report names the request
without reading the middleware's locals. Served like the real app, by the compose `api` command."""

import ast
import inspect
import textwrap
from collections.abc import Callable

from fastapi import FastAPI

from {{ cookiecutter.project_slug }}.observability import access

from antipatterns.app import create_app as create_anti_app


class Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self.names.get(node.arg, node.arg)
        return node

    def visit_Nonlocal(self, node: ast.Nonlocal) -> ast.Nonlocal:
        node.names = [self.names.get(name, name) for name in node.names]
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.name = self.names.get(node.name, node.name)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]


def renamed(function: Callable) -> Callable:
    """`function` compiled again from its source in its module, its locals (but self) renamed."""
    code = function.__code__
    names = {name: f"renamed_{name}" for name in {*code.co_varnames, *code.co_cellvars} - {"self"}}
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    ast.increment_lineno(tree, code.co_firstlineno - 1)  # its stack lines name the file's own lines
    namespace: dict = {}
    exec(compile(Rename(names).visit(tree), code.co_filename, "exec"), vars(access), namespace)  # noqa: S102
    return namespace[code.co_name]


def create_app() -> FastAPI:
    access.AccessMiddleware.__call__ = renamed(access.AccessMiddleware.__call__)
    return create_anti_app()
