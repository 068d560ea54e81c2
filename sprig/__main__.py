"""`python -m sprig ...` is the `sprig` command."""
from sprig.api.cli import main

raise SystemExit(main())
