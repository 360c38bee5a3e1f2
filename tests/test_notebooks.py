"""The notebooks run top to bottom at a small size (SAJAX_NOTEBOOK_SMALL=1).

All five run in one kernel, one after the other, each in a namespace emptied first (``%reset -f``):
what they share is what a user's kernel keeps between notebooks, the imported modules and JAX's
compiled programs, not a variable.  Starting a kernel and importing JAX, sajax and matplotlib in
it costs seconds on two cores.  The module's tests run first (tests/conftest.py) and pytest-xdist's
default scheduling hands a worker its first tests as one consecutive chunk, so in the full suite one
worker runs all of them and starts the kernel once (where they are split, each worker starts its own).
(``--dist loadgroup`` would pin them with an ``xdist_group`` mark, but it hands out the other tests one
at a time, alternately, so both workers set up every module's fixtures and compile its programs: tried and
dropped, benchmarks/results/test_time_ci_cpu.md.)
"""

import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
# what each notebook must report (its evaluation), by the number that starts its name
REPORTS = {"01": "test NLL", "02": "test NLL", "03": "reverse KL", "04": "covered modes", "05": "exact test NLL"}
RESET = "%reset -f"   # the first cell of every run: no name left from the notebook before


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One Python kernel for the module's notebooks, started in a scratch folder."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path_factory.mktemp("notebooks")),
                    env=dict(os.environ, SAJAX_NOTEBOOK_SMALL="1", MPLBACKEND="Agg"))
    yield km
    km.shutdown_kernel(now=True)


def _execute(nb, km) -> list:
    """Runs ``nb`` in the kernel of ``km`` after emptying its namespace; the notebook's own outputs."""
    nb.cells.insert(0, nbformat.v4.new_code_cell(RESET))
    client = NotebookClient(nb, km=km, timeout=900, kernel_name="python3")
    try:
        client.execute()
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
    return [o for c in nb.cells[1:] if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, kernel):
    nb = nbformat.read(path, as_version=4)
    outputs = _execute(nb, kernel)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    expected = REPORTS[path.name[:2]]
    assert expected in text, f"the notebook should report its evaluation ({expected!r})"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "the notebook should show its plots (use %matplotlib inline)"


def test_a_notebook_sees_no_name_from_the_one_before(kernel):
    """The reset works: a name one notebook defines is gone when the next one starts."""
    first = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("LEFT_OVER = 1")])
    second = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('LEFT_OVER' in dir())")])
    _execute(first, kernel)
    outputs = _execute(second, kernel)
    assert "".join(o.get("text", "") for o in outputs).strip() == "False"
