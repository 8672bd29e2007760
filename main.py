#!/usr/bin/env python3
"""RMPE-Live entry point. `python main.py --help` lists the commands."""
import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main())
