//! A fresh database per test, cloned from a migrated template (`CREATE DATABASE … TEMPLATE`).

use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sb_db::{DatabaseConfig, DbPool};

/// Advisory lock serialising template builds across test processes.
const TEMPLATE_LOCK_KEY: i64 = 0x73_62_2d_74_70_6c; // "sb-tpl"

/// The Postgres server tests use: `TEST_DATABASE_URL`, else `DATABASE_URL`, else the local
/// default. Only its server part is used; each test gets its own database on it.
pub fn postgres_server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| DatabaseConfig::DEFAULT_URL.to_owned())
}

fn url_for_database(database: &str) -> crate::Result<String> {
    let mut url = url::Url::parse(&postgres_server_url())?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

/// URL of the server's maintenance database (`postgres`).
pub fn admin_url() -> crate::Result<String> {
    url_for_database("postgres")
}

async fn admin_connection() -> crate::Result<AsyncPgConnection> {
    let url = admin_url()?;
    match tokio::time::timeout(Duration::from_secs(10), AsyncPgConnection::establish(&url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(error)) => Err(format!(
            "tests need PostgreSQL at {}: {error} (start it with: pg_ctlcluster 15 main start)",
            sb_db::redact_url(&url)
        )
        .into()),
        Err(_) => Err("PostgreSQL did not answer within 10 s".into()),
    }
}

/// Name of the template for the migrations this binary embeds: named from the digest of the
/// embedded set, not from the files on disk, so a test binary built before a migration was added
/// never caches its template under the new set's name.
fn template_name() -> String {
    format!("sb_template_{}", sb_db::migrate::MIGRATIONS_DIGEST)
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> crate::Result<bool> {
    let row: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
            .get_result(conn)
            .await?;
    Ok(row.exists)
}

/// Builds the migrated template once per set of migrations, whichever test process gets there
/// first; the others wait on the advisory lock and then find it.
async fn ensure_template() -> crate::Result<String> {
    let name = template_name();
    let mut admin = admin_connection().await?;
    if database_exists(&mut admin, &name).await? {
        return Ok(name);
    }
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(TEMPLATE_LOCK_KEY)
        .execute(&mut admin)
        .await?;
    let result = build_template(&mut admin, &name).await;
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(TEMPLATE_LOCK_KEY)
        .execute(&mut admin)
        .await?;
    result.map(|()| name)
}

async fn build_template(admin: &mut AsyncPgConnection, name: &str) -> crate::Result<()> {
    if database_exists(admin, name).await? {
        return Ok(());
    }
    // Built under a temporary name and renamed when complete, so a crash mid-build never leaves
    // a half-migrated template behind under the real name.
    let building = format!("{name}_building");
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
        .execute(admin)
        .await?;
    diesel::sql_query(format!("CREATE DATABASE {building}"))
        .execute(admin)
        .await?;
    sb_db::migrate::run_pending(&DatabaseConfig::with_url(&url_for_database(&building)?)).await?;
    diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
        .execute(admin)
        .await?;
    // Templates of older migration sets are of no use any more (best effort: one may be in use
    // by a test of another checkout, in which case it stays).
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        datname: String,
    }
    let stale: Vec<Name> = diesel::sql_query(
        "SELECT datname::text AS datname FROM pg_database WHERE datname LIKE 'sb\\_template\\_%' AND datname <> $1",
    )
    .bind::<Text, _>(name)
    .load(admin)
    .await?;
    for Name { datname } in stale {
        drop(
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{datname}\""))
                .execute(admin)
                .await,
        );
    }
    Ok(())
}

/// A database of its own for one test, migrated, dropped when the value is dropped.
pub struct TestDb {
    name: String,
    config: DatabaseConfig,
    pool: DbPool,
}

impl TestDb {
    pub async fn new() -> crate::Result<Self> {
        crate::init();
        let template = ensure_template().await?;
        let name = format!("sb_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = admin_connection().await?;
        let create = format!("CREATE DATABASE {name} TEMPLATE {template}");
        // Postgres refuses to copy a template while another session is connected to it (a
        // concurrent copy can briefly count): retry a few times.
        let mut attempt = 0;
        loop {
            match diesel::sql_query(&create).execute(&mut admin).await {
                Ok(_) => break,
                Err(error)
                    if attempt < 20
                        && error.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                // Another checkout with other migrations building its template drops templates
                // nobody is using at that moment, ours included: build it again.
                Err(error) if attempt < 20 && error.to_string().contains("does not exist") => {
                    attempt += 1;
                    ensure_template().await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        let config = DatabaseConfig::with_url(&url_for_database(&name)?);
        let pool = sb_db::build_pool(&config)?;
        Ok(Self { name, config, pool })
    }

    /// A database name of the test's own, not created: for code under test that creates the
    /// database itself (`switchboard up`). Dropped, if it exists, when the value is dropped.
    pub fn reserved() -> crate::Result<Self> {
        crate::init();
        let name = format!("sb_test_{}", uuid::Uuid::now_v7().simple());
        let config = DatabaseConfig::with_url(&url_for_database(&name)?);
        let pool = sb_db::build_pool(&config)?;
        Ok(Self { name, config, pool })
    }

    /// An empty database (no migrations), for tests of the migrations themselves.
    pub async fn empty() -> crate::Result<Self> {
        crate::init();
        let name = format!("sb_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = admin_connection().await?;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let config = DatabaseConfig::with_url(&url_for_database(&name)?);
        let pool = sb_db::build_pool(&config)?;
        Ok(Self { name, config, pool })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> DatabaseConfig {
        self.config.clone()
    }

    pub fn url(&self) -> String {
        use secrecy::ExposeSecret;
        self.config.url.expose_secret().to_owned()
    }

    pub fn pool(&self) -> DbPool {
        self.pool.clone()
    }

    pub async fn conn(&self) -> crate::Result<sb_db::DbConn> {
        Ok(self.pool.get().await?)
    }

    /// How many rows `table` has (to show that refused requests wrote nothing).
    pub async fn count(&self, table: &str) -> crate::Result<i64> {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.conn().await?;
        let row: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .get_result(&mut conn)
            .await?;
        Ok(row.n)
    }

    /// Row counts of every table except the migrations' own, by name.
    pub async fn all_counts(&self) -> crate::Result<Vec<(String, i64)>> {
        #[derive(diesel::QueryableByName)]
        struct Table {
            #[diesel(sql_type = Text)]
            name: String,
        }
        let tables: Vec<Table> = {
            let mut conn = self.conn().await?;
            diesel::sql_query(
                "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' \
                 AND tablename <> '__diesel_schema_migrations' ORDER BY tablename",
            )
            .load(&mut conn)
            .await?
        };
        let mut counts = Vec::new();
        for table in tables {
            let n = self.count(&format!("\"{}\"", table.name)).await?;
            counts.push((table.name, n));
        }
        Ok(counts)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread with
        // its own small runtime, and wait for it so databases do not pile up.
        crate::wait::block_on_side_thread(async move {
            if let Ok(mut admin) = admin_connection().await {
                let drop_sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(error) = diesel::sql_query(drop_sql).execute(&mut admin).await {
                    eprintln!("could not drop test database {name}: {error}");
                }
            }
        });
    }
}
