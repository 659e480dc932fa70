"""``python -m benchmark``: the PoseBench command line."""

from benchmark.cli import main

raise SystemExit(main())
