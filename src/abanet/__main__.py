"""``python -m abanet``: the same command line as ``abanet``."""

from abanet.cli.main import app

if __name__ == "__main__":
    app(prog_name="abanet")
