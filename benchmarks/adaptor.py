"""See matryoshka/bench/adaptor.py; the same as `mrl bench adaptor`."""

from matryoshka.bench.adaptor import main

if __name__ == "__main__":
    main()
