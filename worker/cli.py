"""The old home of the `archiver` command (`worker.cli:main`, `python -m worker.cli`), kept so
scripts and installs that name it go on working. The CLI lives in `worker.edge.cli`."""

from worker.edge.cli.app import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
