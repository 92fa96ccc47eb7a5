"""``python -m jaxattr demo``: the same as the ``jaxattr`` console script."""

from .cli import main

raise SystemExit(main())
