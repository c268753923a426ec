#!/usr/bin/env bash
# The documentation's own checks (their snippets run in test_readme.sh,
# test_install.sh, test_readme_config.py and bindings/go/test.sh):
# - README.md is a front page: 250 lines at most;
# - every relative link in README.md and docs/*.md names a file that exists;
# - the benchmark figures come from the file they cite: every row of the table
#   in docs/performance.md is a row of bench/results/latest.md, and every
#   "N ns" / "N us" figure on the front page is in that file.
# Run from the repository root.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }

lines=$(wc -l <README.md)
((lines <= 250)) || fail "README.md has $lines lines: the front page keeps to 250 (move the rest to docs/)"
echo "README.md: $lines lines"

python3 - README.md docs/*.md <<'PY'
import os, re, sys
# Pages that other work adds; the map links to them already.
PENDING = {"docs/metrics.md", "docs/forwarding.md"}
bad = []
for name in sys.argv[1:]:
    text = open(name).read()
    # Code blocks hold no links.
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(os.path.dirname(name), target.split("#")[0]))
        if not os.path.exists(path) and path not in PENDING:
            bad.append("%s: %s" % (name, target))
if bad:
    sys.exit("links to nothing:\n  " + "\n  ".join(bad))
print("links: every relative link resolves")
PY

latest=bench/results/latest.md
rows=$(grep -c '^| [0-9] |' docs/performance.md || true)
((rows >= 50)) || fail "docs/performance.md: the benchmark table has $rows rows"
missing=$(grep '^| [0-9] |' docs/performance.md | grep -vxF -f "$latest" || true)
[[ -z $missing ]] || fail "docs/performance.md rows that are not in $latest: $missing"
for figure in $(grep -oE '[0-9]+(\.[0-9]+)? (ns|us)\b' README.md | tr ' ' '_' | sort -u); do
    grep -qF "| ${figure/_/ } |" "$latest" || fail "README.md says ${figure/_/ }, which $latest does not"
done
echo "figures: docs/performance.md's $rows rows and the front page's are $latest's"
