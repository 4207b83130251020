"""`python -m chatgate` runs the command line."""

from chatgate.cli import main

raise SystemExit(main())
