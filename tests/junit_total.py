"""Add up JUnit files into one closing line: ``total: N passed, N failed, N skipped`` (used by bin/test).

bin/test runs pytest twice (the machine-fault tests alone, after the rest); this line counts both.
A file that is missing (a run that stopped before writing it) counts as one failure.
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(path):
    """(passed, failed, skipped) in one JUnit file; a missing or unreadable file is one failure."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, 1, 0
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        outcome = {child.tag for child in case}
        if outcome & {"failure", "error"}:
            failed += 1
        elif "skipped" in outcome:
            skipped += 1
        else:
            passed += 1
    # Errors outside any test case (collection) are on the suite element.
    for suite in root.iter("testsuite"):
        failed += max(0, int(suite.get("errors", 0)) - sum(1 for case in suite.iter("testcase")
                                                            if case.find("error") is not None))
    return passed, failed, skipped


def main(paths):
    totals = [sum(values) for values in zip(*(counts(Path(p)) for p in paths), strict=True)]
    print("total: {} passed, {} failed, {} skipped".format(*totals))


if __name__ == "__main__":
    main(sys.argv[1:])
