"""``python -m esrt_lit.bench``: :func:`esrt_lit.bench.cli.main`."""

from esrt_lit.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
