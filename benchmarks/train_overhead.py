"""See matryoshka/bench/train_overhead.py; the same as `mrl bench train-overhead`."""

from matryoshka.bench.train_overhead import main

if __name__ == "__main__":
    main()
