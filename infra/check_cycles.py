"""Fails when two files of the common crate (`shared/src`) import each other, directly or
around a loop. A file's imports are the `crate::` and `super::` paths it names (in `use`
lines or inline), resolved to the file that defines the module they point into."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared", "src")


def module_of(path: str) -> tuple[str, ...]:
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


def main() -> int:
    files = {}
    for folder, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                files[module_of(path)] = path
    modules = set(files)

    # What a module file re-exports (`pub use problem::{ApiError, FieldError};`): a path
    # through it points into the file that defines the item.
    reexports: dict[tuple, dict] = {}
    for module, path in files.items():
        text = open(path, encoding="utf-8").read()
        for source, items in re.findall(r"pub use (\w+)::\{?([\w, ]+)\}?;", text):
            for item in re.split(r",\s*", items.strip()):
                reexports.setdefault(module, {})[item] = module + (source,)

    def resolve(parts: tuple[str, ...]):
        # The longest prefix that is a file of its own: `crate::app::audit::Event` -> app/audit.rs.
        for end in range(len(parts), 0, -1):
            if parts[:end] in modules:
                found = parts[:end]
                if end < len(parts) and parts[end] in reexports.get(found, {}):
                    return reexports[found][parts[end]]
                return found
        return None

    edges: dict[tuple, set] = {m: set() for m in modules}
    path_re = re.compile(r"\b(crate|super)((?:::\w+)+)")
    group_re = re.compile(r"\b(crate|super)((?:::\w+)*)::\{([^;]*?)\}", re.S)
    for module, path in files.items():
        text = open(path, encoding="utf-8").read()
        # Test modules may reach anywhere; comments (doc links among them) import nothing.
        text = text.split("#[cfg(test)]")[0]
        text = re.sub(r"//[^\n]*", "", text)
        targets = []
        for kind, rest in path_re.findall(text):
            targets.append((kind, tuple(p for p in rest.split("::") if p)))
        for kind, rest, inner in group_re.findall(text):
            prefix = tuple(p for p in rest.split("::") if p)
            for item in re.split(r",\s*", inner):
                head = re.match(r"\s*(\w+)", item)
                if head:
                    targets.append((kind, prefix + (head.group(1),)))
        for kind, parts in targets:
            if kind == "super":
                # `super` is the parent module; `super::super` its parent.
                base = module[:-1]
                while parts and parts[0] == "super":
                    base, parts = base[:-1], parts[1:]
                parts = base + parts
            target = resolve(parts)
            if target is not None and target != module and target != ():
                edges[module].add(target)

    # Tarjan's strongly connected components: a component of more than one file is a loop.
    index, low, stack, on_stack, loops, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(modules):
        if node not in index:
            visit(node)
    for component in loops:
        names = ["/".join(m) + ".rs" for m in component]
        inside = [f"{'/'.join(a)} -> {'/'.join(b)}" for a in component for b in sorted(edges[a]) if b in component]
        print("import loop: " + ", ".join(names) + "\n  " + "\n  ".join(inside))
    if loops:
        return 1
    print(f"no import loop among {len(modules)} files of shared/src")
    return 0


if __name__ == "__main__":
    sys.exit(main())
