"""``python -m bot`` is the same as the ``saferelay`` command."""

from bot.cli import main

raise SystemExit(main())
