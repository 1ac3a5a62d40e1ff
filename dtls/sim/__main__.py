"""`python -m dtls.sim`: the same as `python -m dtls sim`."""

from .cli import main

raise SystemExit(main())
