"""``python -m mlops`` is the ``mlops`` command."""

from .cli import main

raise SystemExit(main())
