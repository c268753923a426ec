"""``python -m libnotif [ARGS...]`` and the ``notif`` console script: run the
notif command-line tool (tools/notif: tail, emit, stats) that pip installed
inside this package (``libnotif/notif``), with ARGS. Without ARGS the tool prints
its help (and exits 1, as `notif` alone does).

The tool replaces this Python process (exec): signals, standard streams and
the exit status are the tool's own.
"""

import os
import sys

TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notif")


def tool_path():
    """The notif executable shipped in this package, or None when this
    installation has none (a copy of the sources without the build step)."""
    return TOOL if os.path.isfile(TOOL) and os.access(TOOL, os.X_OK) else None


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    path = tool_path()
    if path is None:
        sys.stderr.write("libnotif: this installation has no notif tool (%s is missing);"
                         " install the libnotif wheel, or build it with"
                         " `pip install ./bindings/python` from a checkout\n" % TOOL)
        return 127
    # argv[0] "notif": the tool's usage and messages name the command the user knows.
    os.execv(path, ["notif"] + args)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
