"""`python -m matryoshka.cli ...` is `mrl ...` (torchrun needs a module to run)."""

from matryoshka.cli import main

main()
