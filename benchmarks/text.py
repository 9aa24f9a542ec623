"""See matryoshka/bench/text.py; the same as `mrl bench text`."""

from matryoshka.bench.text import main

if __name__ == "__main__":
    main()
