"""The layout holds: scripts alone at src/ top, packages importing only what their __init__ says they may, no script
imported as a library, and the README map saying what the packages say."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGES = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists())
SCRIPTS = sorted(p.stem for p in SRC.glob("*.py"))
BENCH_SCRIPTS = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if "__main__" in p.read_text())


def package_doc(package):
    return " ".join(ast.get_docstring(ast.parse((SRC / package / "__init__.py").read_text())).split())


def may_import(package):
    """The packages named after 'May import:' in the package's __init__ docstring ('none' or a list)."""
    match = re.search(r"May import: ([^.]*)\.", package_doc(package))
    assert match, f"src/{package}/__init__.py: its docstring must end with 'May import: ...'"
    return set() if match.group(1).strip() in ("none", "nothing") else {x.strip() for x in match.group(1).split(",")}


def imported_modules(path):
    """(line, top-level module name) of every import in the file, function-level ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def upward_imports(src=SRC):
    """'file:line imports X' for each import of a package that the importing package may not import."""
    packages = sorted(p.name for p in src.iterdir() if (p / "__init__.py").exists())
    allowed = {p: may_import(p) | {p} for p in packages}
    bad = []
    for package in packages:
        for path in sorted((src / package).rglob("*.py")):
            for line, name in imported_modules(path):
                if name in packages and name not in allowed[package]:
                    bad.append(f"{path.relative_to(src)}:{line} imports {name}")
    return bad


def test_src_top_holds_only_scripts_and_packages():
    assert set(PACKAGES) == {"core", "competition", "model", "training", "tuning", "blending"}
    for name in SCRIPTS:
        assert 'if __name__ == "__main__":' in (SRC / f"{name}.py").read_text(), f"src/{name}.py is not a script"
    assert {p.name for p in SRC.iterdir() if p.name != "__pycache__"} == set(PACKAGES) | {f"{s}.py" for s in SCRIPTS}


def test_package_names_do_not_collide_with_repository_folders():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir()}
    assert not set(PACKAGES) & folders, "pytest puts the repository root on sys.path: a folder would shadow a package"


def test_the_order_of_the_packages_has_no_cycle():
    order, left = [], {p: may_import(p) for p in PACKAGES}
    while left:
        ready = [p for p, needs in left.items() if needs <= set(order)]
        assert ready, f"the packages' 'May import' lists form a cycle among {sorted(left)}"
        order += sorted(ready)
        for p in ready:
            left.pop(p)
    assert order[0] == "core"


def test_no_package_imports_one_above_it():
    assert upward_imports() == []


def test_an_upward_import_is_caught(tmp_path):
    """The check itself can fail: a copy of the competition package that imports training is reported."""
    for package in ("core", "competition", "training"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text((SRC / package / "__init__.py").read_text())
    (tmp_path / "competition" / "metrics.py").write_text("def f():\n    from training.device import amp_dtype\n")
    assert upward_imports(tmp_path) == ["competition/metrics.py:2 imports training"]


@pytest.mark.parametrize("folder", ["src", "tests", "bench"])
def test_no_script_is_imported(folder):
    """Scripts run as processes (subprocess, run.sh); what two of them share lives in a package (or bench/benchkit)."""
    scripts = set(SCRIPTS) | set(BENCH_SCRIPTS)
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in sorted((ROOT / folder).rglob("*.py"))
           for line, name in imported_modules(path) if name in scripts]
    assert bad == []


def test_readme_map_names_every_package_and_script_with_its_job():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("\n## ", 1)] if "\n## " in layout[1:] else layout
    for package in PACKAGES:
        line = next((l for l in layout.splitlines() if l.startswith(f"- `src/{package}/`")), None)
        assert line, f"README Layout has no line for src/{package}/"
        job = package_doc(package)
        assert " ".join(job.split()) in " ".join(line.split()), f"README's src/{package}/ line differs from its __init__"
        modules = {p.stem for p in (SRC / package).glob("*.py") if p.stem != "__init__"}
        missing = [m for m in sorted(modules) if f"`{m}`" not in line]
        assert not missing, f"README's src/{package}/ line does not name {missing}"
    for script in SCRIPTS:
        assert f"`src/{script}.py`" in layout, f"README Layout does not name src/{script}.py"
