# Dev recipes. `just ci` is exactly what CI runs (.ci/run).

# The whole stack in one process on local Postgres and NATS.
dev:
    cargo run -p switchboard -- up

# The README's test command.
test:
    cargo test --workspace

# Mixed traffic against the four services on a private Postgres and NATS (README "Resilience");
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
