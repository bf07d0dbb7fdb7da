#!/usr/bin/env bash
# lab/grade/mutate.sh: grades the graders. Each patch in lab/grade/mutants/ plants one
# realistic student bug; a grader must fail the build it makes.
#
#     lab/grade/mutate.sh                  # every mutant of every lab (63 builds: long)
#     lab/grade/mutate.sh 03 05            # the mutants of labs 03 and 05
#     lab/grade/mutate.sh 04-mailbox-off-by-one   # one mutant, by name
#
# It copies the tree (without target/ and .git) to a scratch directory, checks that the
# unchanged copy passes the graders it will run, then for each mutant: applies the patch, builds
# the release binaries, runs the matching grader (NN-*.sh for a patch named NN-*.patch), and
# reverses the patch. A grader that exits non-zero caught the mutant. It prints one line per
# mutant, `lab NN: caught C of N` per lab, and `overall: caught C of N`; it exits 0 only if
# every mutant was caught. A patch that does not apply or build is reported and counted as
# missed: fix the patch.
#
# All scratch builds share one CARGO_TARGET_DIR (MUTATE_TARGET_DIR, default
# target/mutants), so only the crate recompiles. The scratch copy builds the library as an rlib
# only (no libipclab.a, which no grader uses). Run it in its own IPC and network namespaces to
# keep clear of other work on the machine:
#
#     unshare --ipc --net -- bash -c 'ip link set lo up; lab/grade/mutate.sh'
set -u
GRADE_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$GRADE_DIR/../.." && pwd)
TARGET=${MUTATE_TARGET_DIR:-$ROOT/target/mutants}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/ipclab-mutate.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The mutants to run: every patch, or those whose name starts with an argument.
MUTANTS=()
for p in "$GRADE_DIR"/mutants/*.patch; do
    n=$(basename "$p" .patch)
    if [ $# = 0 ]; then
        MUTANTS+=("$n")
    else
        for a in "$@"; do [[ "$n" == "$a"* ]] && MUTANTS+=("$n") && break; done
    fi
done
[ ${#MUTANTS[@]} -gt 0 ] || { echo "mutate: no mutant matches: $*" >&2; exit 2; }

TREE="$SCRATCH/tree"
mkdir -p "$TREE"
tar -C "$ROOT" --exclude=./target --exclude=./.git -cf - . | tar -C "$TREE" -xf -
sed -i 's/^crate-type = .*/crate-type = ["rlib"]/' "$TREE/Cargo.toml"
# tar keeps the files' times, and cargo judges freshness by them: a copy older than the last
# build in the shared target directory (a mutant's, say) would not be rebuilt. Make it newer.
find "$TREE" -type f -exec touch {} +

build() {
    (cd "$TREE" && CARGO_TARGET_DIR="$TARGET" CARGO_PROFILE_RELEASE_DEBUG=0 \
        CARGO_PROFILE_RELEASE_INCREMENTAL=true cargo build --release --bins --quiet) >"$SCRATCH/build.log" 2>&1
}

# grader_for NAME: the grader of mutant NN-...
grader_for() { ls "$TREE"/lab/grade/"${1%%-*}"-*.sh; }

# The unchanged copy must pass each grader used, or a "catch" would mean nothing.
echo "mutate: building the unchanged tree in $TARGET"
build || { echo "mutate: the unchanged tree does not build:"; cat "$SCRATCH/build.log"; exit 2; }
for lab in $(printf '%s\n' "${MUTANTS[@]}" | cut -d- -f1 | sort -u); do
    g=$(grader_for "$lab")
    if ! timeout 300 bash "$g" "$TARGET/release" >"$SCRATCH/base.log" 2>&1; then
        echo "mutate: $(basename "$g") fails on the unchanged tree:"
        grep -E '^FAIL|passed' "$SCRATCH/base.log"
        exit 2
    fi
done

declare -A CAUGHT TOTAL
caught_all=0
for m in "${MUTANTS[@]}"; do
    lab=${m%%-*}
    TOTAL[$lab]=$((${TOTAL[$lab]:-0} + 1))
    CAUGHT[$lab]=${CAUGHT[$lab]:-0}
    patchfile="$GRADE_DIR/mutants/$m.patch"
    if ! (cd "$TREE" && patch -p1 --quiet --forward <"$patchfile" >"$SCRATCH/patch.log" 2>&1); then
        echo "BROKEN $m: the patch does not apply: $(head -n 2 "$SCRATCH/patch.log" | tr '\n' ' ')"
        (cd "$TREE" && patch -p1 -R --quiet <"$patchfile" >/dev/null 2>&1)
        continue
    fi
    start=$SECONDS
    if ! build; then
        echo "BROKEN $m: the mutant does not build: $(grep -m 1 '^error' "$SCRATCH/build.log")"
    else
        g=$(grader_for "$lab")
        timeout 300 bash "$g" "$TARGET/release" >"$SCRATCH/grade.log" 2>&1
        rc=$?
        if [ "$rc" != 0 ]; then
            CAUGHT[$lab]=$((CAUGHT[$lab] + 1))
            caught_all=$((caught_all + 1))
            why=$(grep -m 1 '^FAIL' "$SCRATCH/grade.log")
            echo "caught $m ($((SECONDS - start)) s): ${why:-grader exit $rc}"
        else
            echo "MISSED $m ($((SECONDS - start)) s): $(tail -n 2 "$SCRATCH/grade.log" | tr '\n' ' ')"
        fi
    fi
    (cd "$TREE" && patch -p1 -R --quiet <"$patchfile") || { echo "mutate: cannot reverse $m" >&2; exit 2; }
done

total=0
for lab in $(printf '%s\n' "${!TOTAL[@]}" | sort); do
    echo "lab $lab: caught ${CAUGHT[$lab]} of ${TOTAL[$lab]}"
    total=$((total + TOTAL[$lab]))
done
echo "overall: caught $caught_all of $total"
[ "$caught_all" = "$total" ]
