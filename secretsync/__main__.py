"""`python -m secretsync ...` runs the same entry point as the console script."""

from secretsync.cli.main import main

raise SystemExit(main())
