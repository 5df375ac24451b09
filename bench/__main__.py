"""``python -m bench``: the whole comparative suite (see ``bench/README.md``)."""

from bench.suite import main

main()
