"""``python -m chaos``: the full fault-injection run; ``--ci`` for the bounded form."""

from chaos.suite import main

raise SystemExit(main())
