"""Execute one notebook in the compatibility environment's own kernel (run by its python).

    .venv-compat/bin/python tests/compat/run_notebook.py IN.ipynb OUT.ipynb

Runs with the compatibility environment's nbclient, jupyter_client and ipykernel (Colab's
versions; tests/compat/README.md), never the course environment's: nothing of the course's
test suite is imported here, so this file needs only what that environment holds. The kernel
is the environment's own ``python3`` (user-wide kernelspecs are hidden), started in an empty
working folder as on Colab; the widgets' state is stored in the notebook's metadata, as
``jupyter nbconvert --execute`` does, so the test can tell which widget shows an image.
Errors are kept in the outputs (the test reads them); the exit status is 0 when the notebook
ran to its end.
"""

from __future__ import annotations

import os
import sys
import tempfile


def main(source: str, target: str) -> int:
    # Only this environment's kernelspecs: a user-wide python3 could point at another Python.
    with tempfile.TemporaryDirectory(prefix="compat-run-") as scratch:
        os.environ["JUPYTER_DATA_DIR"] = os.path.join(scratch, "data")
        os.environ["JUPYTER_CONFIG_DIR"] = os.path.join(scratch, "config")
        os.environ.pop("JUPYTER_PATH", None)

        import nbclient
        import nbformat
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec("python3")
        if spec.argv[0] not in ("python", "python3", sys.executable):
            print(f"error: python3 kernel runs {spec.argv[0]}, not {sys.executable}",
                  file=sys.stderr)
            return 2
        nb = nbformat.read(source, as_version=4)
        folder = os.path.join(scratch, "work")
        os.mkdir(folder)
        client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                         allow_errors=True, store_widget_state=True,
                                         resources={"metadata": {"path": folder}})
        client.execute()
        nb.metadata.setdefault("compat", {})["runner"] = {
            "python": sys.version.split()[0],
            "packages": {name: _version(name) for name in (
                "ipykernel", "ipython", "ipywidgets", "jupyter_client", "nbclient")},
        }
        nbformat.write(nb, target)
    return 0


def _version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
