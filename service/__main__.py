"""`python -m service [--host H] [--port P]`: the same as `deadtree serve`."""
import sys

from deadtree.cli import app

if __name__ == "__main__":
    app(["serve", *sys.argv[1:]], prog_name="python -m service")
