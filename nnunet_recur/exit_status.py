"""The exit statuses every command of `recur` and `recur-eval` uses, so a script can tell them apart.

- ``BAD_INPUT`` (2): an expected error (a file missing, unreadable or inconsistent; a refused run). The
  command prints one ``error: <file>: <problem>`` line on stderr, no traceback, and writes nothing half-done;
  2 is also what typer/click use for a usage error, so "the input was wrong" is one status.
- ``FAILED_CASES`` (1): a batch that ran but recorded failed cases (listed in its report).
- ``INTERRUPTED`` (130): Ctrl-C, as a shell reports SIGINT.
"""

OK = 0
FAILED_CASES = 1
BAD_INPUT = 2
INTERRUPTED = 130
