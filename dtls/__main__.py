"""`python -m dtls`: see `dtls.cli`."""

from .cli import main

raise SystemExit(main())
