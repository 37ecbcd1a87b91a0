"""``python -m workflows <verb>``: the one front door for every analysis."""

from workflows.cli import main

raise SystemExit(main())
