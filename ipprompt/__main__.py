"""`python -m ipprompt` runs the same CLI as the `ipprompt` console script."""

from ipprompt.cli import main

if __name__ == "__main__":
    main()
