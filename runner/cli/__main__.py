"""``python -m runner.cli``: the ``spectune`` console script."""

from runner.cli import main

raise SystemExit(main())
