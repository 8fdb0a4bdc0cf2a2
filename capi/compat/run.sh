#!/usr/bin/env bash
# corosync 1.4.10 on libcoroipc, against corosync's own coroipc.
#
# Builds corosync 1.4.10 twice from its release tarball (BSD; never copied into this
# repository): unmodified, and with its coroipc replaced by libcoroipc at the link and
# include level only (corosync's other sources and Makefiles untouched):
#   * include: our drop-in headers (capi/include/corosync/coroipc{c,s,_types}.h) come
#     first on the compiler's include path (CC="gcc -I capi/include");
#   * link: the objects corosync would compile from lib/coroipcc.c and exec/coroipcs.c
#     are libcoroipc's static library as one relocatable object each (override.mk),
#     which corosync's own rules link into libcoroipcc.so.4 / libcoroipcs.so.4 and
#     everything that uses them (libcpg, libconfdb, ..., the daemon).
# Then, for each build: starts `corosync -f` as a real daemon (one node on loopback),
# runs corosync's own programs against it (testcpg, cpgbench timed, testconfdb,
# corosync-cfgtool -s, corosync-objctl, corosync-quorumtool -s, testsam), kills a client
# with SIGKILL in the middle of its requests and checks the daemon stays up and serves
# the next client, stops the daemon with SIGTERM (clean exit). Prints cpgbench's
# figures side by side and fails if a program fails or ours is slower (beyond the
# run-to-run noise, COMPAT_SLOWER_PCT).
#
# Needs: root (corosync binds and locks as root), gcc, make, autoconf, automake (installed
# from Debian when missing and allowed: CI=true or COMPAT_INSTALL=1). Everything it
# builds stays under target/corosync-compat in this checkout.
#
# `run.sh --bench N` instead runs cpgbench N times against each build, alternating
# (builds reused when present), and prints the medians as README's table.
#
# Environment: COROSYNC_TARBALL (default ../shared/corosync/corosync-1.4.10.tar.gz next
# to the checkout, or /work/shared/...), CPGBENCH_SECS (default 21: two 10 s rounds),
# COMPAT_SLOWER_PCT (default 10), COMPAT_WORK (default target/corosync-compat).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${COMPAT_WORK:-$root/target/corosync-compat}
bench_secs=${CPGBENCH_SECS:-21}
slower_pct=${COMPAT_SLOWER_PCT:-10}
version=1.4.10

say() { printf '[compat] %s\n' "$*"; }
die() { printf '[compat] FAILED: %s\n' "$*" >&2; exit 1; }

find_tarball() {
    local c
    for c in "${COROSYNC_TARBALL:-}" \
        "$root/../shared/corosync/corosync-$version.tar.gz" \
        "/work/shared/corosync/corosync-$version.tar.gz"; do
        if [ -n "$c" ] && [ -f "$c" ]; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

need_tools() {
    local missing=()
    local t
    for t in gcc make autoconf automake stdbuf timeout objcopy ld nm; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "${CI:-}" = true ] || [ "${COMPAT_INSTALL:-}" = 1 ]; then
        say "installing: autoconf automake gcc make binutils (missing: ${missing[*]})"
        apt-get install -y -qq --no-install-recommends autoconf automake gcc make binutils coreutils >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq --no-install-recommends autoconf automake gcc make binutils coreutils >/dev/null; }
    else
        die "missing tools: ${missing[*]} (set COMPAT_INSTALL=1 to install them with apt-get)"
    fi
}

# libcoroipc as two relocatable objects: everything the coroipcc_* (or coroipcs_*)
# functions need from the static library, with only those functions left global.
library_objects() {
    say "building libcoroipc (release)"
    (cd "$root" && cargo build --release --quiet -p coroipc-capi --lib)
    local lib="$root/target/release/libcoroipc.a"
    [ -f "$lib" ] || die "$lib not built"
    mkdir -p "$work/objs"
    local side prefix syms undef
    for side in coroipcc coroipcs; do
        syms="$work/objs/$side.syms"
        nm -g --defined-only "$lib" 2>/dev/null | awk -v p="${side}_" '$2 == "T" && index($3, p) == 1 { print $3 }' | sort -u >"$syms"
        [ -s "$syms" ] || die "no ${side}_* functions in $lib"
        undef=$(sed 's/^/-u /' "$syms" | tr '\n' ' ')
        # shellcheck disable=SC2086
        ld -r $undef -o "$work/objs/$side.o" "$lib"
        # Rust embeds LLVM bitcode (.llvmbc) in its objects; binutils' LLVM plugin
        # (LLVMgold, when installed) chokes on it in `ar`: drop it, the machine code
        # is what links.
        objcopy --keep-global-symbols="$syms" --remove-section=.llvmbc \
            --remove-section=.llvmcmd "$work/objs/$side.o"
    done
    say "libcoroipc objects: $(wc -l <"$work/objs/coroipcc.syms") coroipcc_* and $(wc -l <"$work/objs/coroipcs.syms") coroipcs_* functions"
}

# Unpacks, configures (everything optional off) and builds corosync in $1; $2 = ours|pristine.
build_corosync() {
    local dir=$1 kind=$2
    rm -rf "$dir"
    mkdir -p "$dir"
    tar xzf "$tarball" -C "$dir"
    local src="$dir/corosync-$version"
    (
        cd "$src"
        # The tarball has no .tarball-version: without it the version reads UNKNOWN.
        echo "$version" >.tarball-version
        ./autogen.sh >"$dir/autogen.log" 2>&1 || { tail -20 "$dir/autogen.log"; exit 1; }
        # ac_cv_prog_GROFF=: Debian's groff has no html device (man/ only).
        ./configure --prefix="$dir/inst" --disable-nss --disable-rdma --disable-snmp \
            --disable-dbus ac_cv_prog_GROFF= >"$dir/configure.log" 2>&1 ||
            { tail -20 "$dir/configure.log"; exit 1; }
        local cc=gcc
        if [ "$kind" = ours ]; then
            cc="gcc -I$root/capi/include"
            make -C lib -f Makefile -f "$here/override.mk" CC="$cc" \
                COROIPC_OBJ="$work/objs/coroipcc.o" coroipcc.o >"$dir/make-override.log" 2>&1
            make -C exec -f Makefile -f "$here/override.mk" CC="$cc" \
                COROIPC_OBJ="$work/objs/coroipcs.o" coroipcs.o >>"$dir/make-override.log" 2>&1
        fi
        make -j2 CC="$cc" >"$dir/make.log" 2>&1 || { grep -E 'error|Error' "$dir/make.log" | head -30; exit 1; }
        make install >"$dir/install.log" 2>&1 || { tail -20 "$dir/install.log"; exit 1; }
    ) || die "building corosync ($kind) failed: logs in $dir"
    mkdir -p "$dir/inst/var/run" "$dir/inst/var/lib/corosync" "$dir/inst/var/log/cluster"
    sed "s|@LOG@|$dir/inst/var/log/cluster/corosync.log|" "$here/corosync.conf.in" \
        >"$dir/inst/etc/corosync/corosync.conf"
}

# Proof that the "ours" build runs libcoroipc: its two libraries carry our code.
check_swapped() {
    local lib="$work/ours/inst/lib"
    grep -q "not a buffer of coroipcc_zcb_alloc" "$lib/libcoroipcc.so.4" ||
        die "libcoroipcc.so.4 of the 'ours' build is not libcoroipc"
    grep -q "the init state has no" "$lib/libcoroipcs.so.4" ||
        die "libcoroipcs.so.4 of the 'ours' build is not libcoroipc"
    if grep -q "not a buffer of coroipcc_zcb_alloc" "$work/pristine/inst/lib/libcoroipcc.so.4"; then
        die "the pristine build has libcoroipc in it"
    fi
    say "ours: libcoroipcc.so.4 and libcoroipcs.so.4 are libcoroipc; pristine: corosync's own"
}

daemon_pid=
stop_daemon() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    daemon_pid=
}
trap stop_daemon EXIT

# Runs one program (output in $logs/$name.out); prints a line about it on stderr and
# its exit status on stdout.
run_prog() {
    local name=$1
    shift
    local rc=0
    "$@" >"$logs/$name.out" 2>&1 </dev/null || rc=$?
    printf '[compat]   %-20s rc=%-3s %s\n' "$name" "$rc" "$(grep -av '^$' "$logs/$name.out" | tail -1 | cut -c1-90)" >&2
    echo "$rc"
}

expect() {
    local what=$1 rc=$2
    [ "$rc" = 0 ] || die "$what failed (rc $rc) on the $kind build: see $logs"
}

# Starts `corosync -f` of build $kind with its logs in $logs; waits until it serves.
start_daemon() {
    local inst="$work/$kind/inst"
    rm -rf "$logs"
    mkdir -p "$logs"
    export LD_LIBRARY_PATH="$inst/lib"
    export COROSYNC_MAIN_CONFIG_FILE="$inst/etc/corosync/corosync.conf"
    "$inst/sbin/corosync" -f >"$logs/corosync.stdout" 2>"$logs/corosync.stderr" &
    daemon_pid=$!
    local i
    for i in $(seq 1 100); do
        grep -q "Completed service synchronization" "$logs/corosync.stderr" && break
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "Completed service synchronization" "$logs/corosync.stderr" ||
        { tail -20 "$logs/corosync.stderr"; die "$kind: the daemon did not come up"; }
}

# Stops the daemon with SIGTERM; it must exit 0.
term_daemon() {
    kill -TERM "$daemon_pid"
    local rc=0
    wait "$daemon_pid" || rc=$?
    daemon_pid=
    [ "$rc" = 0 ] || die "$kind: the daemon exited with $rc on SIGTERM"
}

# The whole program suite against one build ($1 = ours|pristine).
run_suite() {
    kind=$1
    local b="$work/$kind/corosync-$version" inst="$work/$kind/inst"
    logs="$work/logs-$kind"
    say "$kind: corosync -f"
    start_daemon

    local t="$b/test" tools="$inst/sbin"
    expect testcpg "$(run_prog testcpg bash -c "(sleep 1; echo hello; sleep 1; echo EXIT) | timeout 20 stdbuf -oL $t/testcpg")"
    grep -aq "DeliverCallback" "$logs/testcpg.out" || die "$kind: testcpg saw no delivery"
    expect testconfdb "$(run_prog testconfdb timeout 20 "$t/testconfdb")"
    expect cfgtool "$(run_prog corosync-cfgtool timeout 20 "$tools/corosync-cfgtool" -s)"
    grep -q "active with no faults" "$logs/corosync-cfgtool.out" || die "$kind: cfgtool -s shows no healthy ring"
    expect objctl "$(run_prog corosync-objctl timeout 20 "$tools/corosync-objctl")"
    grep -q "^totem.version=2" "$logs/corosync-objctl.out" || die "$kind: objctl did not list totem.version"
    expect quorumtool "$(run_prog corosync-quorumtool timeout 20 "$tools/corosync-quorumtool" -s)"

    # cpgbench runs until killed and prints one line per 10 s round.
    local rc
    rc=$(run_prog cpgbench timeout "$bench_secs" stdbuf -oL "$t/cpgbench")
    [ "$rc" = 124 ] || die "$kind: cpgbench ended by itself (rc $rc)"
    grep -q "TP/s" "$logs/cpgbench.out" || die "$kind: cpgbench printed no round"

    # A client killed in the middle of its requests: the daemon lives on and serves.
    stdbuf -oL "$t/cpgbench" >"$logs/killed.out" 2>&1 &
    local victim=$!
    sleep 1.5
    kill -KILL "$victim"
    wait "$victim" 2>/dev/null || true
    sleep 0.5
    kill -0 "$daemon_pid" 2>/dev/null || die "$kind: the daemon died with a killed client"
    expect "cfgtool after kill -9" "$(run_prog cfgtool-after-kill timeout 20 "$tools/corosync-cfgtool" -s)"
    expect "testcpg after kill -9" "$(run_prog testcpg-after-kill bash -c "(sleep 1; echo again; sleep 1; echo EXIT) | timeout 20 stdbuf -oL $t/testcpg")"

    # testsam (its exit status covers the last test; the log says whether all passed).
    run_prog testsam timeout 120 "$t/testsam" >/dev/null
    grep -aq "All tests passed" "$logs/testsam.out" || die "$kind: testsam did not pass"

    term_daemon
    say "$kind: every program passed; the daemon stopped cleanly"
}

# cpgbench's rounds of a build: "bytes-per-write messages-per-second" per line.
rounds() {
    awk '/TP\/s/ { for (i = 1; i <= NF; i++) { if ($i == "bytes") size = $(i - 1); if ($i == "TP/s") tp = $(i - 1) } print size, tp }' \
        "$work/logs-$1/cpgbench.out"
}

# `run.sh --bench N`: N alternating cpgbench runs of each build (builds reused when
# present), then a markdown table of the medians per message size (README's table).
bench() {
    local runs=$1 i
    for i in $(seq 1 "$runs"); do
        for kind in pristine ours; do
            logs="$work/bench-$kind-$i"
            start_daemon
            timeout "$bench_secs" stdbuf -oL "$work/$kind/corosync-$version/test/cpgbench" \
                >"$logs/cpgbench.out" 2>&1 </dev/null || true
            term_daemon
            say "run $i $kind: $(grep -ac 'TP/s' "$logs/cpgbench.out") rounds"
        done
    done
    say "cpgbench medians of $runs runs (messages/s, min-max):"
    echo "| bytes per message | corosync's coroipc | libcoroipc | ratio of medians |"
    echo "|---|---|---|---|"
    local per
    # "size median min max" per message size of build $1.
    per() {
        local k=$1
        for i in $(seq 1 "$runs"); do
            awk '/TP\/s/ { for (f = 1; f <= NF; f++) { if ($f == "bytes") s = $(f - 1); if ($f == "TP/s") t = $(f - 1) } print s, t }' \
                "$work/bench-$k-$i/cpgbench.out"
        done | sort -k1,1n -k2,2g | awk '{ v[$1] = v[$1] " " $2 } END {
            for (s in v) { n = split(v[s], a, " ");
                print s, (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2), a[1], a[n] } }' | sort -k1,1
    }
    join <(per pristine) <(per ours) | sort -n |
        awk '{ printf "| %d | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2f |\n", $1, $2, $3, $4, $5, $6, $7, ($2 > 0 ? $5 / $2 : 0) }'
}

# The rounds of both builds side by side (cpgbench grows the message by 1000 bytes a
# round, so rounds compare by size); fails when ours delivered fewer messages in all
# than corosync's own, beyond COMPAT_SLOWER_PCT.
compare() {
    say "cpgbench, one node on loopback (messages/s in each 10 s round):"
    printf '[compat]   %-10s %14s %14s %7s\n' "bytes" "corosync" "libcoroipc" "ratio"
    join <(rounds pristine | sort -k1,1) <(rounds ours | sort -k1,1) | sort -n |
        awk '{ printf "[compat]   %-10s %14.0f %14.0f %7.2f\n", $1, $2, $3, ($2 > 0 ? $3 / $2 : 0) }'
    join <(rounds pristine | sort -k1,1) <(rounds ours | sort -k1,1) |
        awk -v pct="$slower_pct" '{ p += $2; o += $3 } END {
            printf "[compat]   all rounds: libcoroipc / corosync = %.2f\n", (p > 0 ? o / p : 0);
            exit !(NR > 0 && o >= p * (1 - pct / 100)) }' ||
        die "libcoroipc's cpgbench is more than $slower_pct % below corosync's (or no round to compare)"
}

main() {
    [ "$(id -u)" = 0 ] || die "needs root (corosync binds and locks as root)"
    if [ "${1:-}" = --bench ]; then
        tarball=$(find_tarball) || die "corosync-$version.tar.gz not found"
        if [ ! -x "$work/pristine/inst/sbin/corosync" ] || [ ! -x "$work/ours/inst/sbin/corosync" ]; then
            need_tools
            library_objects
            build_corosync "$work/pristine" pristine
            build_corosync "$work/ours" ours
        fi
        bench "${2:-3}"
        return
    fi
    tarball=$(find_tarball) || {
        say "SKIPPED: corosync-$version.tar.gz not found (set COROSYNC_TARBALL)"
        exit 0
    }
    need_tools
    mkdir -p "$work"
    library_objects
    local t0=$SECONDS
    if [ "${COMPAT_REUSE_PRISTINE:-}" = 1 ] && [ -x "$work/pristine/inst/sbin/corosync" ]; then
        say "pristine corosync: reusing the earlier build (COMPAT_REUSE_PRISTINE=1)"
    else
        build_corosync "$work/pristine" pristine
        say "pristine corosync built ($((SECONDS - t0)) s)"
    fi
    t0=$SECONDS
    build_corosync "$work/ours" ours
    say "corosync on libcoroipc built ($((SECONDS - t0)) s)"
    check_swapped
    if [ "${COMPAT_ONLY_OURS:-}" != 1 ]; then
        run_suite pristine
    fi
    run_suite ours
    compare
    say "done"
}

main "$@"
