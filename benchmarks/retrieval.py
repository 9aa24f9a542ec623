"""See matryoshka/bench/retrieval.py; the same as `mrl bench retrieval`."""

from matryoshka.bench.retrieval import main

if __name__ == "__main__":
    main()
