# Dev recipes. `just ci` is exactly what CI runs (.ci/run).

# The whole stack in one process on local Postgres and NATS.
dev:
    cargo run -p switchboard -- up

# The README's test command.
test:
    cargo test --workspace

# Mixed traffic against the four services on a private Postgres and NATS (docs/testing.md, "Soak");
# `just soak 1` for a one-minute run.
soak minutes="10":
    cargo run --release -p sb-resilience --bin soak -- --minutes {{minutes}}

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

fmt:
    cargo fmt --all

ci:
    bash .ci/run

# Every benchmark scenario beside its peer and limit; writes the table into docs/performance.md
# (the same as `cargo run --release -p sb-bench -- all`).
bench:
    cargo run --release -p sb-bench -- all

migrate:
    cargo run -p switchboard -- migrate

# A dev JWT, e.g. `just token CEO`.
token role:
    cargo run -q -p switchboard -- token --role {{role}}

# Regenerate crates/db/src/schema.rs from the migrations (needs the diesel CLI:
# `cargo install diesel_cli --no-default-features --features postgres`, with libpq-dev).
schema:
    #!/usr/bin/env bash
    set -euo pipefail
    db=sb_schema_$$
    url="postgres://postgres@127.0.0.1:5432/$db"
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
    trap 'psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db WITH (FORCE)"' EXIT
    DATABASE_URL="$url" diesel migration run
    DATABASE_URL="$url" diesel print-schema > crates/db/src/schema.rs

# Byte-exact check of schema.rs against the diesel CLI's output: `--locked-schema` fails when
# running the migrations would change the file (the test suite runs a structural check that needs
# no CLI).
schema-check:
    #!/usr/bin/env bash
    set -euo pipefail
    db=sb_schema_$$
    url="postgres://postgres@127.0.0.1:5432/$db"
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
    trap 'psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db WITH (FORCE)"' EXIT
    DATABASE_URL="$url" diesel migration run --locked-schema >/dev/null && echo "schema.rs is up to date"

# Fuzz every target (or the ones named) for `seconds` each with libFuzzer, e.g. `just fuzz`,
# `just fuzz 600 twiml`. Needs `cargo install cargo-fuzz`. cargo-fuzz passes nightly-only
# flags (-Zsanitizer, coverage instrumentation); there is no nightly toolchain here, so
# RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. New inputs go to
# fuzz/target/scratch/<target> (the committed corpus is read, never written); crashes to
# fuzz/artifacts/<target>/. `just fuzz-merge` folds the new inputs that add coverage into the
# committed corpus.
fuzz seconds="60" *targets="":
    #!/usr/bin/env bash
    set -euo pipefail
    cd fuzz
    export RUSTC_BOOTSTRAP=1
    targets="{{targets}}"
    [ -n "$targets" ] || targets=$(cargo fuzz list)
    cargo fuzz build -O --sanitizer none
    status=0
    for target in $targets; do
        mkdir -p target/scratch/$target
        log=target/scratch/$target.log
        if cargo fuzz run -O --sanitizer none "$target" target/scratch/$target corpus/$target -- \
            -max_total_time={{seconds}} -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
            result=ok
        else
            result=CRASH; status=1
        fi
        execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
        echo "$target: $result, ${execs:-?} execs in {{seconds}} s (log: fuzz/$log)"
    done
    exit $status

# Folds the inputs found by `just fuzz` that add coverage into the committed corpus (minimized).
fuzz-merge *targets="":
    #!/usr/bin/env bash
    set -euo pipefail
    cd fuzz
    export RUSTC_BOOTSTRAP=1
    targets="{{targets}}"
    [ -n "$targets" ] || targets=$(cargo fuzz list)
    for target in $targets; do
        cargo fuzz run -O --sanitizer none "$target" corpus/$target target/scratch/$target -- -merge=1 >/dev/null 2>&1
        echo "$target: $(ls corpus/$target | wc -l) files, $(du -sh corpus/$target | cut -f1)"
    done
