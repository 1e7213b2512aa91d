"""Runs what a reader copied from a page, block after block, as Python's interactive prompt would.

Usage: ``python paste_runner.py blocks.json result.json``, in a fresh process and an empty folder.
``blocks.json`` is a list of code strings (one per copy button pressed).  Each top-level statement
runs on its own, in one namespace, and echoes its value as at the prompt; an exception prints its
traceback and the next statement goes on, as it does for a reader pasting into ``python``.
``result.json`` gets, for each exception, the block, the line in it and the exception's class.
"""

import ast
import json
import sys
import traceback


def main() -> None:
    blocks = json.loads(open(sys.argv[1], encoding="utf-8").read())
    namespace = {"__name__": "__main__"}
    raised = []
    for index, code in enumerate(blocks):
        print(f"--- block {index} ---", flush=True)
        try:
            tree = ast.parse(code, f"<block {index}>")
        except SyntaxError:
            traceback.print_exc()
            raised.append({"block": index, "line": 0, "error": "SyntaxError"})
            continue
        for statement in tree.body:
            compiled = compile(ast.Interactive(body=[statement]), f"<block {index}>", "single")
            try:
                exec(compiled, namespace)
            except Exception as exc:  # noqa: BLE001 - reported, as the prompt would
                traceback.print_exc()
                raised.append({"block": index, "line": statement.lineno, "error": type(exc).__qualname__})
            sys.stdout.flush()
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        json.dump(raised, out)


if __name__ == "__main__":
    main()
