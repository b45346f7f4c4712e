"""The scripts reproduce what the seed documents print."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"


def run(script, *args):
    env = dict(os.environ, PYTHONHASHSEED="0")
    res = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_buy_apple_prints_the_books_numbers():
    # the book's 100 won x 2 apples, then 200 won x 5 (derivatives 5.5 220 1000)
    assert run("buy_apple.py") == [
        "220.00000000000003", "price: 220", "dApple: 2.2", "dApple_num: 110", "dTax: 200",
        "1100.0", "5.5 220.00000000000003 1000"]


def test_buy_apple_orange_prints_the_books_numbers():
    # the book's apple-orange example
    assert run("buy_apple_orange.py") == [
        "715.0000000000001", "price: 715", "dApple: 2.2", "dApple_num: 110",
        "dOrange: 3.3000000000000003", "dOrange_num: 165", "dTax: 650"]


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_gradient_check_script_on_real_mnist():
    out = run("gradient_check.py", "--data-dir", str(MNIST))
    # the seed's lines: mean |backprop - numerical| per parameter, all tiny in float64
    # (the seed printed 2.9e-13, 8.5e-13, 9.5e-13, 1.2e-10)
    means = dict(line.split(":") for line in out[:4])
    assert list(means) == ["W1", "b1", "W2", "b2"]
    assert all(float(v) < 1e-9 for v in means.values())
    rows = [line.split() for line in out if re.match(r"^(W|b)\d ", line)]
    assert len(rows) == 4
    assert all(float(rel) < 1e-7 for _, _, rel in rows), rows


def test_train_script_learns_the_spiral():
    out = run("train.py", "--epochs", "4")
    accs = [float(re.search(r"test acc ([\d.]+)", line).group(1)) for line in out if "test acc" in line]
    assert len(accs) == 5  # epoch 0 (untrained) and 4 epochs
    assert accs[0] < 0.5 and accs[-1] > 0.9


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_train_neuralnet_prints_the_seeds_per_epoch_lines():
    out = run("train_neuralnet.py", "--data-dir", str(MNIST), "--iters", "720")
    pairs = [tuple(map(float, line.split())) for line in out]
    assert len(pairs) == 3  # 720 iterations, 240 per epoch on 24,000 images
    assert all(0 <= a <= 1 and 0 <= b <= 1 for a, b in pairs)
    assert pairs[-1][1] > 0.9 and pairs[-1][0] > pairs[0][0] - 0.01


def test_manual_backprop_shows_where_the_seed_formulas_go_wrong():
    out = run("manual_backprop.py", "--steps", "300")
    rows = {line.split()[0]: line for line in out if line.startswith(("w1[", "w2["))}
    assert len(rows) == 8
    assert all("seed formula is wrong" in rows[f"w1[{i}][{j}]"] for i in range(2) for j in range(2))
    assert not any("wrong" in rows[f"w2[{i}][{j}]"] for i in range(2) for j in range(2))
    for line in rows.values():  # numerical, kernels and graph columns agree to 6 decimals
        num, _, ker, gra = line.split()[1:5]
        assert num == ker == gra
    assert [line.split()[0] for line in out if line.startswith("[")] == ["[0]", "[100]", "[200]"]
    assert out[-1].startswith("kernels and graph end 0.0e+00 apart")


def test_graph_examples_print_the_seed_and_cs231n_numbers(tmp_path):
    out = run("graph_examples.py", "--out", str(tmp_path))
    assert out[0] == "buy_apple: 220.00000000000003"
    assert out[3] == ("  dapple = 2.2, dapple_num = 110.00000000000001, dorange = 3.3000000000000003, "
                      "dorange_num = 165.0, dtax = 650.0")
    assert out[5] == "  dx = -4.0, dy = -4.0, dz = 3.0"


def _fastbp_names(tree):
    """Every dotted name `fastbp.a.b...` a module's code reads (attribute chains off `fastbp`)."""
    import ast
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, n = [], node
            while isinstance(n, ast.Attribute):
                chain.append(n.attr)
                n = n.value
            if isinstance(n, ast.Name) and n.id == "fastbp":
                names.add(".".join(reversed(chain)))
    return names


@pytest.mark.parametrize("path", sorted((REPO / "scripts").glob("*.py")) + sorted((REPO / "bench").glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fastbp_name_a_script_uses_exists(path):
    # scripts that run only on a GPU or for minutes still must not call what does not exist
    import ast
    import importlib
    import fastbp
    for dotted in sorted(_fastbp_names(ast.parse(path.read_text()))):
        obj, parts = fastbp, dotted.split(".")
        for k, part in enumerate(parts):
            if not isinstance(obj, type(fastbp)):
                break  # past the modules: attributes of objects are the code's business
            if not hasattr(obj, part):  # maybe a submodule that nothing imported yet
                try:
                    importlib.import_module("fastbp." + ".".join(parts[:k + 1]))
                except ImportError:
                    pass
            assert hasattr(obj, part), f"{path.name} uses fastbp.{dotted}: {obj.__name__} has no {part!r}"
            obj = getattr(obj, part)
