#!/usr/bin/env bash
# Runs the example programs on generated inputs and checks their output against answers
# computed independently with coreutils. Usage: examples_test.sh EXAMPLES_BIN_DIR
set -euo pipefail
bin="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Input: words with mixed whitespace (tabs, repeated spaces, blank lines, no final newline).
python3 - "$work/input.txt" <<'PY'
import random, sys
random.seed(7)
vocab = ["alpha", "beta", "gamma", "delta", "x", "the", "a", "Zeta", "été", "x-y"]
with open(sys.argv[1], "w") as f:
    for i in range(20000):
        n = random.randint(0, 12)
        seps = [" ", "  ", "\t", " \t "]
        f.write(random.choice(["", " ", "\t"]) + "".join(random.choice(vocab) + random.choice(seps) for _ in range(n)))
        f.write("\n" if i < 19999 else "")
PY

# 1. wordcount == tr | sort | uniq -c
"$bin/wordcount" "$work/input.txt" "$work/wc"
cat "$work"/wc/part-* | awk -F'\t' '{print $2, $1}' | LC_ALL=C sort > "$work/got"
tr -s '[:space:]' '\n' < "$work/input.txt" | grep -v '^$' | LC_ALL=C sort | uniq -c \
  | awk '{print $1, $2}' | LC_ALL=C sort > "$work/want"
diff "$work/got" "$work/want" > /dev/null || fail "wordcount differs from tr|sort|uniq -c"
[ -f "$work/wc/_SUCCESS" ] || fail "wordcount wrote no _SUCCESS"
echo "wordcount: $(wc -l < "$work/got") distinct words match"

# 2. filtered_wordcount == the same without the stop words
printf 'the\na\nx\n' > "$work/stop.txt"
"$bin/filtered_wordcount" "$work/input.txt" "$work/stop.txt" "$work/fwc"
cat "$work"/fwc/part-* | awk -F'\t' '{print $2, $1}' | LC_ALL=C sort > "$work/got"
grep -v -E ' (the|a|x)$' "$work/want" > "$work/want_filtered"
diff "$work/got" "$work/want_filtered" > /dev/null || fail "filtered_wordcount differs"
echo "filtered_wordcount: matches"

# 3. log_errors: count of ERROR lines and field 3 of those with HDFS
{
  printf 'ERROR\tphp\tmysql\t1001\tdown\n'
  printf 'INFO\tHDFS\tnode\t1002\tok\n'
  printf 'ERROR\tHDFS\tdisk\t1003\tfull\n'
  printf 'WARN\tx\ty\t1004\tz\n'
  printf 'ERROR\tHDFS\tnet\t1005\tslow\n'
  printf 'ERRORS are not ERROR lines? they start with ERROR too\n'
} > "$work/log.txt"
"$bin/log_errors" "$work/log.txt" > "$work/log.out"
grep -qx 'errors: 4' "$work/log.out" || fail "log_errors count: $(cat "$work/log.out")"
[ "$(grep '^hdfs: ' "$work/log.out" | sort | tr '\n' ' ')" = "hdfs: 1003 hdfs: 1005 " ] \
  || fail "log_errors fields: $(cat "$work/log.out")"
grep -q '^cached blocks: [1-9]' "$work/log.out" || fail "log_errors did not persist"
echo "log_errors: matches"

# 4. min_accumulator == sort -n | head -1
python3 -c "
import random
random.seed(3)
print('\n'.join(str(random.randint(-10**12, 10**12)) for _ in range(50000)))
print('not-a-number')
" > "$work/numbers.txt"
"$bin/min_accumulator" "$work/numbers.txt" > "$work/min.out"
want_min=$(grep -E '^-?[0-9]+$' "$work/numbers.txt" | sort -n | awk 'NR==1')
grep -qx "min: $want_min" "$work/min.out" || fail "min_accumulator: $(cat "$work/min.out"), want $want_min"
grep -qx 'lines: 50001' "$work/min.out" || fail "min_accumulator line count: $(cat "$work/min.out")"
grep -qx 'skipped: 1' "$work/min.out" || fail "min_accumulator skipped: $(cat "$work/min.out")"
echo "min_accumulator: matches"
