"""The layout's two rules, checked on every import statement (also those inside functions):
the engine (demo_core) never imports gradio, and nothing the app runs imports a training module."""
import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

RUNTIME = [p for p in (ROOT / "demo_core").rglob("*.py") if "training" not in p.relative_to(ROOT / "demo_core").parts]
APP = [ROOT / "app.py", *(ROOT / "ui").rglob("*.py"), *(ROOT / "index_builder").rglob("*.py")]


def imports(path) -> set[str]:
    """Absolute names of the modules `path` imports, relative imports resolved."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from . import training`
    return names


def is_training(name: str) -> bool:
    return name == "demo_core.training" or name.startswith("demo_core.training.")


def test_the_import_scan_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "demo_core" / "clip"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from ..training.train_clip import build_model\n    import gradio\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = imports(pkg / "x.py")
    assert "gradio" in found and any(is_training(n) for n in found)


@pytest.mark.parametrize("path", sorted((ROOT / "demo_core").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_does_not_import_gradio(path):
    assert not {n for n in imports(path) if n == "gradio" or n.startswith("gradio.")}


@pytest.mark.parametrize("path", RUNTIME + APP, ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_code_does_not_import_training_modules(path):
    assert not {n for n in imports(path) if is_training(n)}


@pytest.mark.slow  # imports the whole app in a fresh interpreter
def test_importing_the_app_loads_no_training_module():
    code = ("import sys, app, demo_core.engine, demo_core.clip.matrix; "
            "print(sorted(m for m in sys.modules if m.startswith('demo_core.training')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
